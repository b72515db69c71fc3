//! AV1 encoding: the rav1e plugin against its peers in the same run, on the
//! same frames: 5 s of 1080p25 `testsrc2` as a yuv420p Y4M file (made once,
//! cached under `target/bench-av1/`), encoded
//!
//! - by the rav1e plugin (rav1e 0.8), driven through the plugin ABI as the
//!   host drives it, muxed into MP4 by the ffmpeg plugin;
//! - by `ffmpeg -c:v librav1e` (Debian's rav1e 0.5) with the same speed,
//!   quantizer and tiles;
//! - by `ffmpeg -c:v libsvtav1` (Debian's SVT-AV1 1.4) at preset 12, CRF 25
//!   (SVT's CRF 25 is quantizer index 100, rav1e's quantizer here).
//!
//! Every encoder reads the Y4M file and writes an MP4, runs as its own
//! process under GNU time (the plugin path re-executes this binary), and
//! uses every core. Printed per encoder: frames per second (wall), CPU
//! seconds, file size and SSIM against the source (FFmpeg's `ssim` filter);
//! then the plugin's ratios to each peer. `AV1_BENCH_SLOW=1` adds rav1e
//! speed 6 (the presets' speed) on both rav1e paths.
//!
//! Run: `cargo build --release --workspace && cargo bench -p deliver --bench av1`.

mod common;

use common::{ssim, target_dir, timed, video_settings, y4m_source, Timed};
use deliver_plugin_api::abi::pix;
use std::path::Path;

const SECONDS: u32 = 5;
const FPS: u32 = 25;
const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;
/// rav1e's default base quantizer.
const QUANTIZER: u32 = 100;
/// Tiles as the rav1e presets set them (2×2).
const TILE_COLS: u32 = 2;
const TILE_ROWS: u32 = 2;
/// The environment variable that makes this binary the plugin encoder:
/// `<speed>:<source.y4m>:<out.mp4>`.
const CHILD: &str = "AV1_BENCH_PLUGIN_ENCODE";

/// The plugin path, in the child process: Y4M frames → rav1e plugin →
/// ffmpeg plugin's MP4 muxer.
fn plugin_encode(speed: u32, src: &Path, out: &Path) {
    let settings = video_settings(
        "av1",
        "rav1e",
        (WIDTH, HEIGHT),
        FPS,
        pix::YUV420P,
        true,
        format!(
            "speed = {speed}\nquantizer = {QUANTIZER}\ntile_cols = {TILE_COLS}\ntile_rows = {TILE_ROWS}"
        ),
    );
    let frames = common::plugin_encode("deliver_plugin_rav1e", &settings, src, "mp4", out);
    assert_eq!(frames, i64::from(SECONDS * FPS));
}

struct Row {
    name: String,
    t: Timed,
    bytes: u64,
    ssim: (f64, f64),
}

fn measure(name: String, out: &Path, src: &Path, t: Timed) -> Row {
    let bytes = std::fs::metadata(out).unwrap().len();
    let ssim = ssim(out, src);
    Row {
        name,
        t,
        bytes,
        ssim,
    }
}

fn plugin_row(speed: u32, src: &Path, dir: &Path) -> Row {
    let out = dir.join(format!("plugin-s{speed}.mp4"));
    let exe = std::env::current_exe().unwrap();
    let t = timed(
        &exe,
        &["--bench".as_ref()],
        Some((
            CHILD,
            format!("{speed}:{}:{}", src.display(), out.display()),
        )),
    );
    measure(
        format!("rav1e plugin, speed {speed}, quantizer {QUANTIZER}"),
        &out,
        src,
        t,
    )
}

fn ffmpeg_row(name: String, file: &str, codec_args: &[&str], src: &Path, dir: &Path) -> Row {
    let out = dir.join(file);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "-hide_banner".as_ref(),
        "-loglevel".as_ref(),
        "error".as_ref(),
        "-y".as_ref(),
        "-i".as_ref(),
        src.as_os_str(),
    ];
    args.extend(codec_args.iter().map(std::ffi::OsStr::new));
    args.push(out.as_os_str());
    let t = timed(Path::new("ffmpeg"), &args, None);
    measure(name, &out, src, t)
}

fn librav1e_row(speed: u32, src: &Path, dir: &Path) -> Row {
    let (s, q, tc, tr) = (
        speed.to_string(),
        QUANTIZER.to_string(),
        TILE_COLS.to_string(),
        TILE_ROWS.to_string(),
    );
    ffmpeg_row(
        format!("ffmpeg librav1e, speed {speed}, qp {QUANTIZER}"),
        &format!("librav1e-s{speed}.mp4"),
        &[
            "-c:v",
            "librav1e",
            "-speed",
            &s,
            "-qp",
            &q,
            "-tile-columns",
            &tc,
            "-tile-rows",
            &tr,
        ],
        src,
        dir,
    )
}

fn main() {
    if let Ok(job) = std::env::var(CHILD) {
        let mut it = job.splitn(3, ':');
        let speed = it.next().unwrap().parse().unwrap();
        let (src, out) = (it.next().unwrap(), it.next().unwrap());
        plugin_encode(speed, Path::new(src), Path::new(out));
        return;
    }
    // `cargo bench` passes --bench; any other invocation (cargo test) skips.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = target_dir().join("bench-av1");
    let src = y4m_source(&dir, (WIDTH, HEIGHT), FPS, SECONDS, "yuv420p");
    let mut speeds = vec![10];
    if std::env::var_os("AV1_BENCH_SLOW").is_some() {
        speeds.push(6);
    }
    let mut rows = Vec::new();
    for &speed in &speeds {
        let p = plugin_row(speed, &src, &dir);
        let l = librav1e_row(speed, &src, &dir);
        rows.push((p, l));
    }
    let svt = ffmpeg_row(
        "ffmpeg libsvtav1, preset 12, crf 25".into(),
        "svtav1-p12.mp4",
        &["-c:v", "libsvtav1", "-preset", "12", "-crf", "25"],
        &src,
        &dir,
    );

    let frames = f64::from(SECONDS * FPS);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "av1: {SECONDS} s of {WIDTH}x{HEIGHT}p{FPS} testsrc2 (yuv420p Y4M), {cores} cores, each encoder in its own process, MP4 out:"
    );
    println!(
        "  {:<44} {:>7} {:>8} {:>8} {:>10} {:>8} {:>8}",
        "encoder", "fps", "wall s", "CPU s", "KiB", "SSIM Y", "SSIM All"
    );
    let show = |r: &Row| {
        println!(
            "  {:<44} {:>7.2} {:>8.2} {:>8} {:>10.1} {:>8.5} {:>8.5}",
            r.name,
            frames / r.t.wall,
            r.t.wall,
            r.t.cpu.map_or("n/a".to_owned(), |c| format!("{c:.2}")),
            r.bytes as f64 / 1024.0,
            r.ssim.0,
            r.ssim.1
        );
    };
    for (p, l) in &rows {
        show(p);
        show(l);
    }
    show(&svt);
    let ratios = |p: &Row, peer: &Row| {
        let cpu = match (p.t.cpu, peer.t.cpu) {
            (Some(a), Some(b)) => format!(", CPU {:.2}x", a / b),
            _ => String::new(),
        };
        println!(
            "  {} / {}: fps {:.2}x{cpu}, size {:.2}x, SSIM All {:+.5}",
            p.name,
            peer.name,
            (frames / p.t.wall) / (frames / peer.t.wall),
            p.bytes as f64 / peer.bytes as f64,
            p.ssim.1 - peer.ssim.1
        );
    };
    for (p, l) in &rows {
        ratios(p, l);
        ratios(p, &svt);
    }
}
