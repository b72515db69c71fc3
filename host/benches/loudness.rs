//! Loudness measurement benchmark: a 60-minute stereo 48 kHz programme
//! (independent pink noise per channel plus a tone, level moving through a
//! slow swell and 30-second steps) measured by deliver's meter (integrated,
//! LRA, true peak, momentary every 10 ms, decoding through the ffmpeg
//! plugin included) and by its peer in the same run,
//! `ffmpeg -i file -af ebur128=peak=true -f null -` (momentary every
//! 100 ms). `framelog=verbose` only keeps FFmpeg from printing 36 000 lines
//! to the terminal, which would slow the peer, not the measurement.
//!
//! Run: `cargo build --release --workspace && cargo bench -p deliver --bench loudness`.
//! The programme is made once with the ffmpeg CLI and kept in
//! `target/loudness-bench/` (about 690 MB of 16-bit WAV).

use deliver::loudness::measure_file;
use deliver::plugins::{default_dirs, Registry};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SECONDS: u32 = 3600;

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable path");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("bench binary lives in target/<profile>/deps")
        .to_owned()
}

fn programme() -> PathBuf {
    let dir = target_dir().join("loudness-bench");
    let path = dir.join(format!("programme-{SECONDS}s-stereo-48k.wav"));
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join("partial.wav");
    let noise = |seed: u32| {
        format!(
            "anoisesrc=color=pink:sample_rate=48000:amplitude=0.25:seed={seed}:duration={SECONDS}"
        )
    };
    let tone = format!("sine=frequency=440:sample_rate=48000:duration={SECONDS}");
    let graph = "[0:a][1:a]amerge=inputs=2[n];[2:a]volume=0.05,pan=stereo|c0=c0|c1=c0[t];\
                 [n][t]amix=inputs=2:normalize=0,\
                 volume='(0.55+0.45*sin(2*PI*t/397))*if(lt(mod(t,60),30),1,0.3)':eval=frame[a]";
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", &noise(1)])
        .args(["-f", "lavfi", "-i", &noise(2)])
        .args(["-f", "lavfi", "-i", &tone])
        .args(["-filter_complex", graph, "-map", "[a]", "-c:a", "pcm_s16le"])
        .arg(&tmp)
        .output()
        .expect("ffmpeg CLI (Debian package ffmpeg)");
    assert!(
        out.status.success(),
        "making the programme: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Seconds, and the (I, LRA, TP) summary.
fn deliver(path: &Path) -> (f64, String) {
    let reg = Registry::global(&default_dirs());
    let start = Instant::now();
    let a = measure_file(reg, path).expect("deliver measures the programme");
    let t = start.elapsed().as_secs_f64();
    let m = a.summary;
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    (
        t,
        format!(
            "I {} LUFS, LRA {} LU, TP {} dBTP, max M {} LUFS",
            f(m.integrated_lufs),
            f(m.lra_lu),
            f(m.true_peak_dbtp),
            f(a.max_momentary_lufs)
        ),
    )
}

fn ffmpeg(path: &Path) -> (f64, String) {
    let start = Instant::now();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args([
            "-af",
            "ebur128=peak=true:framelog=verbose",
            "-f",
            "null",
            "-",
        ])
        .output()
        .expect("ffmpeg CLI");
    let t = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg ebur128 failed: {err}");
    let summary = err
        .rsplit_once("Summary:")
        .map(|(_, s)| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    (t, summary)
}

fn main() {
    // `cargo bench` passes --bench; any other invocation (cargo test) skips.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let path = programme();
    // Alternate so that neither side always runs with a warmer page cache.
    let (d1, ds) = deliver(&path);
    let (f1, fs) = ffmpeg(&path);
    let (f2, _) = ffmpeg(&path);
    let (d2, _) = deliver(&path);
    let (d, f) = (d1.min(d2), f1.min(f2));
    let secs = SECONDS as f64;
    println!("loudness, 60 min stereo 48 kHz 16-bit WAV (best of 2):");
    println!(
        "  deliver meter (M every 10 ms) : {d:7.2} s  ({:6.1}x real time)  {ds}",
        secs / d
    );
    println!(
        "  ffmpeg ebur128=peak=true      : {f:7.2} s  ({:6.1}x real time)  {fs}",
        secs / f
    );
    println!("  speed ratio deliver/ffmpeg = {:.2}x (target >= 2)", f / d);
}
