//! What the codec benchmarks share: a cached Y4M source made by the ffmpeg
//! CLI, processes timed under GNU time, FFmpeg's SSIM, and the plugin path
//! (Y4M frames → an encoder plugin → the ffmpeg plugin's muxer, driven
//! through the ABI as the host drives it).
#![allow(dead_code)] // each benchmark uses its own part

use deliver_plugin_api::abi::{self, media, pix};
use deliver_plugin_api::plugin::{EncoderSettings, VideoView};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The Y4M reader's buffer: FFmpeg's avio buffer size.
const READ_BUFFER: usize = 32 * 1024;

/// `target/`, from the benchmark binary's path (`target/release/deps/…`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

pub fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// A cached `testsrc2` source as a Y4M file of `pix_fmt` (FFmpeg's name).
pub fn y4m_source(
    dir: &Path,
    (w, h): (u32, u32),
    fps: u32,
    seconds: u32,
    pix_fmt: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join(format!("testsrc2-{w}x{h}p{fps}-{seconds}s-{pix_fmt}.y4m"));
    if !src.exists() {
        let tmp = dir.join("src.tmp.y4m");
        let lavfi = format!("testsrc2=size={w}x{h}:rate={fps}:duration={seconds}");
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
            // 10-bit Y4M is a "strict" extension in FFmpeg's muxer.
            .args(["-pix_fmt", pix_fmt, "-strict", "-1", "-f", "yuv4mpegpipe"])
            .arg(&tmp));
        std::fs::rename(&tmp, &src).unwrap();
    }
    src
}

/// Wall and CPU time of one process.
pub struct Timed {
    pub wall: f64,
    pub cpu: Option<f64>,
}

const TIME_MARK: &str = "bench-cpu-seconds:";

pub fn timed(program: &Path, args: &[&std::ffi::OsStr], env: Option<(&str, String)>) -> Timed {
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

/// FFmpeg's SSIM of `file` against the source: (Y, All).
pub fn ssim(file: &Path, src: &Path) -> (f64, f64) {
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

/// The plugin path: every frame of the Y4M file `src` (of `settings`' size
/// and format) through the encoder of plugin `encoder_lib` (a cdylib name
/// in `target/release`), muxed into `container` at `out` by the ffmpeg
/// plugin. Returns the number of frames.
pub fn plugin_encode(
    encoder_lib: &str,
    settings: &EncoderSettings,
    src: &Path,
    container: &str,
    out: &Path,
) -> i64 {
    let plugins = target_dir().join("release");
    let load = |name: &str| {
        deliver::plugins::load_file(&plugins.join(format!("lib{name}.so")))
            .unwrap_or_else(|e| panic!("{e} (build the workspace first)"))
            .plugin
    };
    let (encoder, ffmpeg) = (load(encoder_lib), load("deliver_plugin_ffmpeg"));
    let (mut enc, params) = encoder.open_encoder(settings).unwrap();
    let mut mux = ffmpeg
        .open_muxer(out.to_str().unwrap(), container, "")
        .unwrap();
    let idx = mux.add_stream(&params).unwrap();
    mux.write_header().unwrap();

    let l = pix::layout(settings.pix_fmt).expect("a planar format");
    let (w, h) = (settings.width as usize, settings.height as usize);
    let cw = (w + (1 << l.chroma_shift_x) - 1) >> l.chroma_shift_x;
    let ch = (h + (1 << l.chroma_shift_y) - 1) >> l.chroma_shift_y;
    let b = l.bytes_per_sample;
    // Read through a small buffer that stays in cache, as FFmpeg's avio
    // does (32 KiB): one 4–8 MB read() per frame straight into the frame
    // costs the kernel about 5× the CPU (0.32 s against 0.06 s for this
    // 415 MB file), which would be charged to the plugin path.
    let mut r = BufReader::with_capacity(READ_BUFFER, std::fs::File::open(src).unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("YUV4MPEG2 "), "{line}");
    let mut frame = vec![0u8; (w * h + 2 * cw * ch) * b];
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
        // Pieces smaller than the buffer, so that BufReader does not hand
        // the whole frame to one read().
        for piece in frame.chunks_mut(READ_BUFFER / 2) {
            r.read_exact(piece).unwrap();
        }
        let (y, uv) = frame.split_at(w * h * b);
        let (u, v) = uv.split_at(cw * ch * b);
        let mut planes: [(&[u8], usize); 4] = [(&[], 0); 4];
        planes[0] = (y, w * b);
        planes[1] = (u, cw * b);
        planes[2] = (v, cw * b);
        let view = VideoView {
            width: settings.width,
            height: settings.height,
            pix_fmt: settings.pix_fmt,
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
    pts
}

/// Video settings for a benchmark encode: BT.709 limited, every core.
pub fn video_settings(
    codec: &str,
    implementation: &str,
    (width, height): (u32, u32),
    fps: u32,
    pix_fmt: u32,
    global_header: bool,
    options: String,
) -> EncoderSettings {
    EncoderSettings {
        media: media::VIDEO,
        codec: codec.into(),
        implementation: implementation.into(),
        width,
        height,
        pix_fmt,
        frame_rate: abi::Rational::new(fps as i32, 1),
        time_base: abi::Rational::new(1, fps as i32),
        color: abi::ColorTags::BT709_LIMITED,
        global_header,
        options,
        ..Default::default()
    }
}
