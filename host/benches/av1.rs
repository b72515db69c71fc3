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

use deliver_plugin_api::abi::{self, media, pix};
use deliver_plugin_api::plugin::{EncoderSettings, VideoView};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

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

/// `target/`, from the benchmark binary's path (`target/release/deps/…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// The cached source.
fn source(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join(format!("testsrc2-{WIDTH}x{HEIGHT}p{FPS}-{SECONDS}s.y4m"));
    if !src.exists() {
        let tmp = dir.join("src.tmp.y4m");
        let lavfi = format!("testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={SECONDS}");
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
            .arg(&lavfi)
            .args(["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe"])
            .arg(&tmp));
        std::fs::rename(&tmp, &src).unwrap();
    }
    src
}

/// Wall and CPU time of one encoder process.
struct Timed {
    wall: f64,
    cpu: Option<f64>,
}

const TIME_MARK: &str = "bench-cpu-seconds:";

fn timed(program: &Path, args: &[&std::ffi::OsStr], env: Option<(&str, String)>) -> Timed {
    let gnu_time = Path::new("/usr/bin/time").exists();
    let mut cmd = if gnu_time {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", &format!("{TIME_MARK} %U %S")]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).env("RUST_LOG", "warn");
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let (_, stderr) = run(&mut cmd);
    let wall = start.elapsed().as_secs_f64();
    let cpu = stderr.lines().rev().find_map(|l| {
        let mut it = l.strip_prefix(TIME_MARK)?.split_whitespace();
        Some(it.next()?.parse::<f64>().ok()? + it.next()?.parse::<f64>().ok()?)
    });
    Timed { wall, cpu }
}

/// The plugin path, in the child process: Y4M frames → rav1e plugin →
/// ffmpeg plugin's MP4 muxer.
fn plugin_encode(speed: u32, src: &Path, out: &Path) {
    let plugins = target_dir().join("release");
    let load = |name: &str| {
        deliver::plugins::load_file(&plugins.join(format!("lib{name}.so")))
            .unwrap_or_else(|e| panic!("{e} (build the workspace first)"))
            .plugin
    };
    let (rav1e, ffmpeg) = (load("deliver_plugin_rav1e"), load("deliver_plugin_ffmpeg"));
    let settings = EncoderSettings {
        media: media::VIDEO,
        codec: "av1".into(),
        implementation: "rav1e".into(),
        width: WIDTH,
        height: HEIGHT,
        pix_fmt: pix::YUV420P,
        frame_rate: abi::Rational::new(FPS as i32, 1),
        time_base: abi::Rational::new(1, FPS as i32),
        color: abi::ColorTags::BT709_LIMITED,
        global_header: true,
        options: format!(
            "speed = {speed}\nquantizer = {QUANTIZER}\ntile_cols = {TILE_COLS}\ntile_rows = {TILE_ROWS}"
        ),
        ..Default::default()
    };
    let (mut enc, params) = rav1e.open_encoder(&settings).unwrap();
    let mut mux = ffmpeg.open_muxer(out.to_str().unwrap(), "mp4", "").unwrap();
    let idx = mux.add_stream(&params).unwrap();
    mux.write_header().unwrap();

    let mut r = BufReader::new(std::fs::File::open(src).unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("YUV4MPEG2 "), "{line}");
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut frame = vec![0u8; w * h + 2 * cw * ch];
    let mut pts = 0i64;
    let mut drain = |enc: &mut deliver_plugin_api::host::Encoder| loop {
        match enc.receive().unwrap() {
            Ok(p) => mux.write_packet(idx, &p).unwrap(),
            Err(s) => return s,
        }
    };
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        assert!(line.starts_with("FRAME"), "{line}");
        r.read_exact(&mut frame).unwrap();
        let (y, uv) = frame.split_at(w * h);
        let (u, v) = uv.split_at(cw * ch);
        let mut planes: [(&[u8], usize); 4] = [(&[], 0); 4];
        planes[0] = (y, w);
        planes[1] = (u, cw);
        planes[2] = (v, cw);
        let view = VideoView {
            width: WIDTH,
            height: HEIGHT,
            pix_fmt: pix::YUV420P,
            planes,
            n_planes: 3,
            pts,
            time_base: settings.time_base,
            color: settings.color,
            key: false,
        };
        enc.send_video(Some(&view)).unwrap();
        drain(&mut enc);
        pts += 1;
    }
    enc.send_video(None).unwrap();
    assert_eq!(drain(&mut enc), abi::status::EOF);
    mux.finish().unwrap();
    assert_eq!(pts, i64::from(SECONDS * FPS));
}

/// FFmpeg's SSIM of `file` against the source: (Y, All).
fn ssim(file: &Path, src: &Path) -> (f64, f64) {
    let (_, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(file)
        .arg("-i")
        .arg(src)
        .args(["-lavfi", "[0:v][1:v]ssim", "-f", "null", "-"]));
    let line = err
        .lines()
        .rev()
        .find(|l| l.contains("SSIM Y:"))
        .unwrap_or_else(|| panic!("no SSIM summary in: {err}"));
    let value = |key: &str| -> f64 {
        line.split_once(key)
            .unwrap()
            .1
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (value("Y:"), value("All:"))
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
    let src = source(&dir);
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
