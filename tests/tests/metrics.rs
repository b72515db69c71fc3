//! The quality metrics agree with FFmpeg's `ssim` and `psnr` filters on the
//! same two inputs (the numbers a QC operator would get from `ffmpeg`).

use deliver::quality::{psnr_from_mse, sse, ssim, Luma};
use deliver_tests::ffmpeg;
use std::process::Command;

const W: usize = 320;
const H: usize = 240;
const FRAMES: usize = 10;

fn summary_value(text: &str, marker: &str) -> f64 {
    let rest = text
        .rsplit_once(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in {text}"))
        .1;
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn luma_ssim_and_psnr_match_ffmpeg_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("ref.yuv");
    let encoded = tmp.path().join("low.mp4");
    let distorted = tmp.path().join("dist.yuv");
    let size = format!(
        "testsrc2=size={W}x{H}:rate=25:duration={}",
        FRAMES as f64 / 25.0
    );
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &size,
        "-pix_fmt",
        "yuv420p",
        "-f",
        "rawvideo",
        reference.to_str().unwrap(),
    ]);
    // A low-quality encode, so that the metrics are far from their limits.
    ffmpeg(&[
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-s",
        &format!("{W}x{H}"),
        "-r",
        "25",
        "-i",
        reference.to_str().unwrap(),
        "-c:v",
        "libx264",
        "-crf",
        "40",
        encoded.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        encoded.to_str().unwrap(),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        distorted.to_str().unwrap(),
    ]);

    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats"])
        .args([
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-s",
            &format!("{W}x{H}"),
            "-i",
        ])
        .arg(&distorted)
        .args([
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-s",
            &format!("{W}x{H}"),
            "-i",
        ])
        .arg(&reference)
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
    let ff_ssim_y = summary_value(&text, "SSIM Y:");
    let ff_psnr_y = summary_value(&text, "PSNR y:");

    let r = std::fs::read(&reference).unwrap();
    let d = std::fs::read(&distorted).unwrap();
    let frame = W * H * 3 / 2;
    assert_eq!(r.len(), frame * FRAMES);
    assert_eq!(d.len(), frame * FRAMES);
    let luma = |buf: &[u8], i: usize| -> Vec<u8> { buf[i * frame..i * frame + W * H].to_vec() };
    let (mut ssim_sum, mut mse_sum) = (0.0, 0.0);
    for i in 0..FRAMES {
        let (a, b) = (luma(&r, i), luma(&d, i));
        let la = Luma {
            data: &a,
            stride: W,
            width: W,
            height: H,
            bytes: 1,
            depth: 8,
        };
        let lb = Luma {
            data: &b,
            stride: W,
            width: W,
            height: H,
            bytes: 1,
            depth: 8,
        };
        ssim_sum += ssim(&la, &lb);
        mse_sum += sse(&la, &lb) as f64 / (W * H) as f64;
    }
    let ssim_y = ssim_sum / FRAMES as f64;
    let psnr_y = psnr_from_mse(mse_sum / FRAMES as f64, 8).unwrap();
    assert!(
        ff_ssim_y < 0.99 && ff_psnr_y < 40.0,
        "the pair is not distorted enough to test"
    );
    // FFmpeg prints SSIM with 6 decimals and PSNR with 2: the tolerances are
    // its print precision.
    assert!(
        (ssim_y - ff_ssim_y).abs() < 1e-4,
        "SSIM Y: deliver {ssim_y}, ffmpeg {ff_ssim_y}"
    );
    assert!(
        (psnr_y - ff_psnr_y).abs() < 0.01,
        "PSNR y: deliver {psnr_y}, ffmpeg {ff_psnr_y}"
    );
}
