//! `deliver compare --no-delta-e` against its peer in the same run: FFmpeg's
//! `ssim` and `psnr` filters on the same two files, decode included on both
//! sides:
//!
//! ```text
//! ffmpeg -i ref.mkv -i dist.mkv -lavfi "[0][1]ssim;[0][1]psnr" -f null -
//! ```
//!
//! (FFmpeg 5.1's CLI feeds one input to two filter pads without `split`.)
//! The pair is 60 s of 1080p25 testsrc2: a reference encoded by libx264 at
//! CRF 12 and a distorted encode of it at CRF 32, made once and cached under
//! `target/bench-compare/`. Both sides' numbers are printed too, so a reader
//! sees they measured the same thing.
//!
//! Run: `cargo build --release --workspace && cargo bench -p deliver --bench compare`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SECONDS: u32 = 60;

fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// A run's wall time and, where GNU time is installed, its CPU time (user +
/// sys): on a machine shared with other work the CPU time is the steadier
/// of the two.
struct Timed {
    wall: f64,
    cpu: Option<f64>,
    stdout: String,
    stderr: String,
}

const TIME_MARK: &str = "bench-cpu-seconds:";

fn timed(program: &str, args: &[&std::ffi::OsStr]) -> Timed {
    let gnu_time = Path::new("/usr/bin/time").exists();
    let mut cmd = if gnu_time {
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", &format!("{TIME_MARK} %U %S"), program]);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).env("RUST_LOG", "warn");
    let start = Instant::now();
    let (stdout, stderr) = run(&mut cmd);
    let wall = start.elapsed().as_secs_f64();
    let cpu = stderr.lines().rev().find_map(|l| {
        let mut it = l.strip_prefix(TIME_MARK)?.split_whitespace();
        Some(it.next()?.parse::<f64>().ok()? + it.next()?.parse::<f64>().ok()?)
    });
    Timed {
        wall,
        cpu,
        stdout,
        stderr,
    }
}

/// `target/`, from the benchmark binary's path (`target/release/deps/…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

fn ffmpeg(args: &[&str]) {
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args));
}

/// The cached pair (made once: about a minute of x264 at 1080p).
fn pair(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let reference = dir.join("ref-1080p25-60s-crf12.mkv");
    let distorted = dir.join("dist-1080p25-60s-crf32.mkv");
    if !reference.exists() {
        let tmp = dir.join("ref.tmp.mkv");
        let src = format!("testsrc2=size=1920x1080:rate=25:duration={SECONDS}");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &src,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "12",
            "-pix_fmt",
            "yuv420p",
            tmp.to_str().unwrap(),
        ]);
        std::fs::rename(&tmp, &reference).unwrap();
    }
    if !distorted.exists() {
        let tmp = dir.join("dist.tmp.mkv");
        ffmpeg(&[
            "-i",
            reference.to_str().unwrap(),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "32",
            tmp.to_str().unwrap(),
        ]);
        std::fs::rename(&tmp, &distorted).unwrap();
    }
    (reference, distorted)
}

fn peer(reference: &Path, distorted: &Path) -> (Timed, String) {
    let t = timed(
        "ffmpeg",
        &[
            "-hide_banner".as_ref(),
            "-nostats".as_ref(),
            "-i".as_ref(),
            reference.as_os_str(),
            "-i".as_ref(),
            distorted.as_os_str(),
            "-lavfi".as_ref(),
            "[0][1]ssim;[0][1]psnr".as_ref(),
            "-f".as_ref(),
            "null".as_ref(),
            "-".as_ref(),
        ],
    );
    let lines = t
        .stderr
        .lines()
        .filter(|l| l.contains("SSIM Y:") || l.contains("PSNR y:"))
        .map(|l| l.split_once("] ").map_or(l, |(_, r)| r).to_owned())
        .collect::<Vec<_>>()
        .join("\n    ");
    (t, lines)
}

fn deliver(reference: &Path, distorted: &Path) -> (Timed, String) {
    let plugins = Path::new(env!("CARGO_BIN_EXE_deliver")).parent().unwrap();
    let t = timed(
        env!("CARGO_BIN_EXE_deliver"),
        &[
            "--plugin-dir".as_ref(),
            plugins.as_os_str(),
            "compare".as_ref(),
            "--no-delta-e".as_ref(),
            reference.as_os_str(),
            distorted.as_os_str(),
        ],
    );
    let lines = t
        .stdout
        .lines()
        .filter(|l| l.starts_with("SSIM") || l.starts_with("PSNR"))
        .collect::<Vec<_>>()
        .join("\n    ");
    (t, lines)
}

fn best(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a?.min(b?))
}

fn main() {
    // `cargo bench` passes --bench; any other invocation (cargo test) skips.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (reference, distorted) = pair(&target_dir().join("bench-compare"));
    // Alternate the two so that neither always runs on a warmer machine.
    let (d1, dl) = deliver(&reference, &distorted);
    let (p1, pl) = peer(&reference, &distorted);
    let (p2, _) = peer(&reference, &distorted);
    let (d2, _) = deliver(&reference, &distorted);
    let (d, p) = (d1.wall.min(d2.wall), p1.wall.min(p2.wall));
    let (dc, pc) = (best(d1.cpu, d2.cpu), best(p1.cpu, p2.cpu));
    let cpu = |c: Option<f64>| c.map_or("n/a".to_owned(), |c| format!("{c:.2} s"));
    println!("compare: {SECONDS} s 1080p25 H.264 pair, SSIM + PSNR all planes, decode included (best of 2):");
    println!(
        "  deliver compare --no-delta-e : {d:7.2} s wall ({:.2}x real time), CPU {}",
        SECONDS as f64 / d,
        cpu(dc)
    );
    println!("    {dl}");
    println!(
        "  ffmpeg ssim + psnr filters   : {p:7.2} s wall ({:.2}x real time), CPU {}",
        SECONDS as f64 / p,
        cpu(pc)
    );
    println!("    {pl}");
    println!("  ratio deliver/ffmpeg = {:.3} wall (target <= 1.0)", d / p);
    if let (Some(dc), Some(pc)) = (dc, pc) {
        println!("  ratio deliver/ffmpeg = {:.3} CPU time", dc / pc);
    }
}
