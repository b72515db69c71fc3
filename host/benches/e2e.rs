//! End-to-end benchmark: a 30 s 1920×1080 25 fps composition (two layers and
//! a dissolve, stereo tone) delivered with the `web/h264-1080p` preset, against
//! its peer in the same run: the `ffmpeg` CLI making the same output from
//! `lavfi` sources with the same libx264 settings and a two-pass `loudnorm`,
//! as a user would script it.
//!
//! Run: `cargo build --release --workspace && cargo bench -p deliver --bench e2e`.
//! `deliver` does more than its peer here (it also decodes every deliverable
//! twice to measure PSNR/SSIM and prove the file matches), so the ratio is
//! conservative.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const SECONDS: u32 = 30;

const MANIFEST: &str = r#"
version = 1
name = "bench"
[canvas]
width = 1920
height = 1080
frame_rate = "25"
duration = "30s"
colour_space = "bt709"
[[video]]
[[video.clip]]
generator = "bars"
start = "0s"
duration = "16s"
[[video.clip]]
generator = "pattern"
start = "15s"
duration = "15s"
transition_in = { kind = "dissolve", duration = "1s" }
[[audio]]
[[audio.clip]]
generator = "sine"
frequency = 1000.0
level = -18.0
[[deliverable]]
preset = "web/h264-1080p"
name = "web"
"#;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    stderr
}

fn json_field(text: &str, key: &str) -> String {
    let i = text
        .find(&format!("\"{key}\""))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    let rest = &text[i + key.len() + 2..];
    let v = rest.split('"').nth(1).unwrap();
    v.to_owned()
}

fn peer(dir: &Path) -> f64 {
    let start = Instant::now();
    let sine = format!("sine=frequency=1000:sample_rate=48000:duration={SECONDS}");
    // Pass 1: measure. lavfi's sine is 1/8 full scale (-18 dBFS), duplicated
    // to stereo as deliver mixes it.
    let stats = run(Command::new("ffmpeg").args([
        "-hide_banner",
        "-nostats",
        "-f",
        "lavfi",
        "-i",
        &sine,
        "-af",
        "pan=stereo|c0=c0|c1=c0,loudnorm=I=-23:TP=-1:LRA=20:print_format=json",
        "-f",
        "null",
        "-",
    ]));
    let (mi, mtp, mlra, mth, off) = (
        json_field(&stats, "input_i"),
        json_field(&stats, "input_tp"),
        json_field(&stats, "input_lra"),
        json_field(&stats, "input_thresh"),
        json_field(&stats, "target_offset"),
    );
    // Pass 2: render, normalize and encode with the preset's settings.
    let graph = format!(
        "[0:v][1:v]xfade=transition=fade:duration=1:offset=15,format=yuv420p[v];\
         [2:a]pan=stereo|c0=c0|c1=c0,loudnorm=I=-23:TP=-1:LRA=20:\
         measured_I={mi}:measured_TP={mtp}:measured_LRA={mlra}:measured_thresh={mth}:\
         offset={off}:linear=true,aresample=48000[a]"
    );
    run(Command::new("ffmpeg").args([
        "-hide_banner",
        "-nostats",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "smptehdbars=size=1920x1080:rate=25:duration=16",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1920x1080:rate=25:duration=15",
        "-f",
        "lavfi",
        "-i",
        &sine,
        "-filter_complex",
        &graph,
        "-map",
        "[v]",
        "-map",
        "[a]",
        "-c:v",
        "libx264",
        "-crf",
        "20",
        "-preset",
        "medium",
        "-profile:v",
        "high",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-colorspace",
        "bt709",
        "-color_range",
        "tv",
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        "-movflags",
        "+faststart",
        dir.join("peer.mp4").to_str().unwrap(),
    ]));
    start.elapsed().as_secs_f64()
}

fn deliver(dir: &Path) -> f64 {
    let manifest = dir.join("bench.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_deliver"))
        .env("RUST_LOG", "warn")
        .arg("render")
        .arg(&manifest)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .expect("spawn deliver");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "deliver failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

fn main() {
    // `cargo bench` passes --bench; any other invocation (cargo test) skips.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Alternate the two so that neither always runs on a warmer machine.
    let d1 = deliver(dir.path());
    let p1 = peer(dir.path());
    let p2 = peer(dir.path());
    let d2 = deliver(dir.path());
    let (d, p) = (d1.min(d2), p1.min(p2));
    println!("e2e 30 s 1080p25 H.264 + AAC, loudness-normalized (best of 2):");
    println!(
        "  deliver render : {d:7.2} s  ({:.2}x real time)",
        SECONDS as f64 / d
    );
    println!(
        "  ffmpeg 2-pass  : {p:7.2} s  ({:.2}x real time)",
        SECONDS as f64 / p
    );
    println!("  ratio deliver/ffmpeg = {:.3} (target <= 1.10)", d / p);
}
