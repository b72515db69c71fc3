//! The quality metrics agree with FFmpeg's `ssim` and `psnr` filters on the
//! same two inputs (the numbers a QC operator would get from `ffmpeg`):
//! high- and low-quality encodes, 4:2:0, 4:2:2 and 10-bit, and identical
//! frames (infinite PSNR).

use deliver::quality::{psnr_from_mse, sse, ssim, Luma};
use deliver_tests::ffmpeg;
use std::path::Path;
use std::process::Command;

const W: usize = 320;
const H: usize = 240;
const FRAMES: usize = 10;

fn summary_value(text: &str, marker: &str) -> String {
    let rest = text
        .rsplit_once(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in {text}"))
        .1;
    rest.split_whitespace().next().unwrap().to_owned()
}

/// FFmpeg's SSIM Y and PSNR y of `distorted` against `reference` (raw video).
fn ffmpeg_luma(distorted: &Path, reference: &Path, pix_fmt: &str) -> (f64, Option<f64>) {
    let size = format!("{W}x{H}");
    let raw = ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", &size, "-i"];
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats"])
        .args(raw)
        .arg(distorted)
        .args(raw)
        .arg(reference)
        .args([
            "-lavfi",
            "[0:v]split[a0][a1];[1:v]split[b0][b1];[a0][b0]ssim;[a1][b1]psnr",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let ssim_y = summary_value(&text, "SSIM Y:").parse().unwrap();
    let psnr_y = summary_value(&text, "PSNR y:");
    (ssim_y, (psnr_y != "inf").then(|| psnr_y.parse().unwrap()))
}

/// Makes a reference and a distorted raw file: testsrc2 in `pix_fmt`,
/// through libx264 at `crf` (`None`: the same frames).
fn pair(dir: &Path, pix_fmt: &str, crf: Option<u32>) -> (std::path::PathBuf, std::path::PathBuf) {
    let reference = dir.join(format!("ref-{pix_fmt}.yuv"));
    let src = format!(
        "testsrc2=size={W}x{H}:rate=25:duration={}",
        FRAMES as f64 / 25.0
    );
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &src,
        "-pix_fmt",
        pix_fmt,
        "-f",
        "rawvideo",
        reference.to_str().unwrap(),
    ]);
    let Some(crf) = crf else {
        return (reference.clone(), reference);
    };
    let encoded = dir.join(format!("enc-{pix_fmt}-{crf}.mkv"));
    let distorted = dir.join(format!("dist-{pix_fmt}-{crf}.yuv"));
    let size = format!("{W}x{H}");
    let crf_s = crf.to_string();
    ffmpeg(&[
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        "-s",
        &size,
        "-r",
        "25",
        "-i",
        reference.to_str().unwrap(),
        "-c:v",
        "libx264",
        "-crf",
        &crf_s,
        "-pix_fmt",
        pix_fmt,
        encoded.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        encoded.to_str().unwrap(),
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        distorted.to_str().unwrap(),
    ]);
    (reference, distorted)
}

/// deliver's SSIM Y (mean over frames) and PSNR y (from the mean MSE).
fn deliver_luma(reference: &Path, distorted: &Path, pix_fmt: &str) -> (f64, Option<f64>) {
    let (bytes, depth, chroma) = match pix_fmt {
        "yuv420p" => (1, 8, W * H / 2),
        "yuv422p" => (1, 8, W * H),
        "yuv420p10le" => (2, 10, W * H / 2),
        other => panic!("no layout for {other}"),
    };
    let frame = (W * H + chroma) * bytes;
    let r = std::fs::read(reference).unwrap();
    let d = std::fs::read(distorted).unwrap();
    assert_eq!(r.len(), frame * FRAMES, "{}", reference.display());
    assert_eq!(d.len(), frame * FRAMES, "{}", distorted.display());
    fn luma(buf: &[u8], i: usize, frame: usize, bytes: usize, depth: u32) -> Luma<'_> {
        Luma {
            data: &buf[i * frame..i * frame + W * H * bytes],
            stride: W * bytes,
            width: W,
            height: H,
            bytes,
            depth,
        }
    }
    let (mut ssim_sum, mut mse_sum) = (0.0, 0.0);
    for i in 0..FRAMES {
        let (a, b) = (
            luma(&r, i, frame, bytes, depth),
            luma(&d, i, frame, bytes, depth),
        );
        ssim_sum += ssim(&a, &b);
        mse_sum += sse(&a, &b) as f64 / (W * H) as f64;
    }
    (
        ssim_sum / FRAMES as f64,
        psnr_from_mse(mse_sum / FRAMES as f64, depth),
    )
}

fn agree(pix_fmt: &str, crf: Option<u32>) {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, distorted) = pair(tmp.path(), pix_fmt, crf);
    let (ff_ssim, ff_psnr) = ffmpeg_luma(&distorted, &reference, pix_fmt);
    let (ssim_y, psnr_y) = deliver_luma(&reference, &distorted, pix_fmt);
    let case = format!("{pix_fmt}, crf {crf:?}");
    // FFmpeg prints SSIM with 6 decimals and PSNR with 2: the tolerances
    // (1e-4 and 0.01 dB, the issue's bounds) are above its print precision.
    assert!(
        (ssim_y - ff_ssim).abs() < 1e-4,
        "{case}: SSIM Y deliver {ssim_y}, ffmpeg {ff_ssim}"
    );
    match (psnr_y, ff_psnr) {
        (Some(a), Some(b)) => assert!(
            (a - b).abs() < 0.01,
            "{case}: PSNR y deliver {a}, ffmpeg {b}"
        ),
        (None, None) => {}
        other => panic!("{case}: PSNR y deliver/ffmpeg {other:?}"),
    }
    if crf.is_none() {
        assert_eq!(psnr_y, None, "{case}: identical frames have infinite PSNR");
        assert!((ssim_y - 1.0).abs() < 1e-12, "{case}: {ssim_y}");
    }
}

#[test]
fn low_quality_420() {
    agree("yuv420p", Some(40));
}

#[test]
fn high_quality_420() {
    agree("yuv420p", Some(12));
}

#[test]
fn low_quality_422() {
    agree("yuv422p", Some(36));
}

#[test]
fn ten_bit_420() {
    agree("yuv420p10le", Some(30));
}

#[test]
fn identical_frames() {
    agree("yuv420p", None);
}
