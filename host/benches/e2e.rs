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
    // Pass 2: render, normalize and encode with the preset's settings. The
    // pattern layer is deliver's `pattern` generator rebuilt from lavfi
    // filters (gradient made once and looped, moving box and bar as
    // overlays, the 16-bit frame code as enabled overlays), so that both
    // sides give libx264 the same pictures to encode: a cheaper or costlier
    // picture would decide the ratio by itself. The bars are static on both
    // sides and cost next to nothing to encode.
    // Frame numbers come from timestamps (`round(t*25)`): overlay's `n`
    // counts from 1 in FFmpeg 5.1.
    let first = 15 * 25; // the pattern's first timeline frame
    let mut video = format!(
        "[1:v]geq=r='floor(X*255/(W-1))':g='floor(Y*255/(H-1))':\
         b='255-floor((floor(X*255/(W-1))+floor(Y*255/(H-1)))/2)',\
         drawbox=x=48:y=984:w=768:h=48:color=black:t=fill,\
         loop=loop=374:size=1:start=0,setpts=N/25/TB[bg0];\
         [bg0][2:v]overlay=x='mod(floor((round(t*25)+{first})*1920/100),2100)-180':y=450:eval=frame[bg1];\
         [bg1][3:v]overlay=x=0:y='mod(floor((round(t*25)+{first})*1080/75),1080)':eval=frame[bg2];\
         [4:v]split=16"
    );
    for bit in 0..16 {
        video += &format!("[w{bit}]");
    }
    video += ";";
    let mut last = "bg2".to_owned();
    for bit in 0..16 {
        let x = 48 + bit * 48;
        video += &format!(
            "[{last}][w{bit}]overlay=x={x}:y=984:enable='eq(mod(floor((round(t*25)+{first})/{}),2),1)'[c{bit}];",
            1u32 << (15 - bit)
        );
        last = format!("c{bit}");
    }
    let graph = format!(
        "{video}[{last}]scale=out_color_matrix=bt709:out_range=tv,format=yuv444p[pat];\
         [0:v]format=yuv444p[bars];[bars][pat]xfade=transition=fade:duration=1:offset=15,format=yuv420p[v];\
         [5:a]pan=stereo|c0=c0|c1=c0,loudnorm=I=-23:TP=-1:LRA=20:\
         measured_I={mi}:measured_TP={mtp}:measured_LRA={mlra}:measured_thresh={mth}:\
         offset={off}:linear=true,aresample=48000,\
         aformat=sample_fmts=fltp:channel_layouts=stereo[a]"
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
        "color=c=black:size=1920x1080:rate=25:duration=0.04,format=rgb24",
        "-f",
        "lavfi",
        "-i",
        "color=c=0xEBEBEB:size=180x180:rate=25:duration=15",
        "-f",
        "lavfi",
        "-i",
        "color=c=0x808080:size=1920x27:rate=25:duration=15",
        "-f",
        "lavfi",
        "-i",
        "color=c=white:size=48x48:rate=25:duration=15",
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
    // The two sides must have encoded the same pictures for the ratio to mean
    // anything: compare the pattern half of both outputs.
    let psnr = run(Command::new("ffmpeg").args([
        "-hide_banner",
        "-nostats",
        "-i",
        dir.path().join("out/bench_web.mp4").to_str().unwrap(),
        "-i",
        dir.path().join("peer.mp4").to_str().unwrap(),
        "-lavfi",
        "[0:v]trim=start=17,setpts=PTS-STARTPTS[a];[1:v]trim=start=17,setpts=PTS-STARTPTS[b];[a][b]psnr",
        "-f",
        "null",
        "-",
    ]));
    let avg = psnr
        .rsplit_once("average:")
        .map(|(_, r)| r.split_whitespace().next().unwrap_or("?"));
    println!(
        "  same pictures: PSNR between the two outputs over the pattern part = {} dB",
        avg.unwrap_or("?")
    );
}
