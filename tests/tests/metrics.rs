//! The quality metrics agree with FFmpeg's `ssim` and `psnr` filters on the
//! same two inputs (the numbers a QC operator would get from `ffmpeg`), on
//! every plane and the All/average values: high- and low-quality encodes,
//! 4:2:0, 4:2:2 and 10-bit, and identical frames (infinite PSNR). Then
//! `deliver compare` on real files: its JSON against the same filters, a
//! size difference, a missing file, and ΔE2000 (zero on identical pictures,
//! large on a matrix mistag that leaves SSIM untouched).
//!
//! Tolerances: FFmpeg prints SSIM with 6 decimals and PSNR with 6 (2 in
//! its summary of `deliver compare`'s text); 1e-4 and 0.01 dB are the
//! issue's bounds, above both print precisions.

use deliver::quality::{measure, Plane, Series};
use deliver_tests::{deliver, ffmpeg, plugin_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const W: usize = 320;
const H: usize = 240;
const FRAMES: usize = 10;

/// FFmpeg's summary numbers: SSIM Y, U, V, All and PSNR y, u, v, average
/// (`None` = inf).
#[derive(Debug)]
struct Peer {
    ssim: [f64; 4],
    psnr: [Option<f64>; 4],
}

fn field(line: &str, key: &str) -> String {
    line.split_once(key)
        .unwrap_or_else(|| panic!("no `{key}` in {line}"))
        .1
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn parse_peer(text: &str) -> Peer {
    let line = |marker: &str| {
        text.lines()
            .rev()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no `{marker}` in {text}"))
            .to_owned()
    };
    let (s, p) = (line("SSIM Y:"), line("PSNR y:"));
    let psnr = |k: &str| {
        let v = field(&p, k);
        (v != "inf").then(|| v.parse().unwrap())
    };
    Peer {
        ssim: ["Y:", "U:", "V:", "All:"].map(|k| field(&s, k).parse().unwrap()),
        psnr: ["y:", "u:", "v:", "average:"].map(psnr),
    }
}

/// Runs FFmpeg's filters on two inputs given as argument lists.
fn peer(first: &[&str], second: &[&str]) -> Peer {
    peer_with(first, second, "")
}

/// As [`peer`], with `filter` (ending in a comma) applied to the second
/// input first.
fn peer_with(first: &[&str], second: &[&str], filter: &str) -> Peer {
    let graph = format!("[0:v]split[a0][a1];[1:v]{filter}split[b0][b1];[a0][b0]ssim;[a1][b1]psnr");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats"])
        .args(first)
        .args(second)
        .args(["-lavfi", &graph, "-f", "null", "-"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    parse_peer(&text)
}

fn raw_input<'a>(path: &'a Path, pix_fmt: &'a str, size: &'a str) -> Vec<&'a str> {
    vec![
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        "-s",
        size,
        "-i",
        path.to_str().unwrap(),
    ]
}

/// Makes a reference and a distorted raw file: testsrc2 in `pix_fmt`,
/// through libx264 at `crf` (`None`: the same frames).
fn pair(dir: &Path, pix_fmt: &str, crf: Option<u32>) -> (PathBuf, PathBuf) {
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
    let mut args = raw_input(&reference, pix_fmt, &size);
    args.extend([
        "-r",
        "25",
        "-c:v",
        "libx264",
        "-crf",
        &crf_s,
        "-pix_fmt",
        pix_fmt,
        encoded.to_str().unwrap(),
    ]);
    ffmpeg(&args);
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

/// deliver's summary of two raw files, through the library.
fn deliver_raw(reference: &Path, distorted: &Path, pix_fmt: &str) -> Series {
    let (bytes, depth, cw, ch) = match pix_fmt {
        "yuv420p" => (1, 8, W / 2, H / 2),
        "yuv422p" => (1, 8, W / 2, H),
        "yuv420p10le" => (2, 10, W / 2, H / 2),
        other => panic!("no layout for {other}"),
    };
    let frame = (W * H + 2 * cw * ch) * bytes;
    let r = std::fs::read(reference).unwrap();
    let d = std::fs::read(distorted).unwrap();
    assert_eq!(r.len(), frame * FRAMES, "{}", reference.display());
    assert_eq!(d.len(), frame * FRAMES, "{}", distorted.display());
    // (offset in the frame, width, height) of Y, U and V.
    let layout = [
        (0, W, H),
        (W * H * bytes, cw, ch),
        ((W * H + cw * ch) * bytes, cw, ch),
    ];
    fn planes(
        buf: &[u8],
        start: usize,
        layout: [(usize, usize, usize); 3],
        bytes: usize,
        depth: u32,
    ) -> [Plane<'_>; 3] {
        std::array::from_fn(|c| {
            let (offset, w, h) = layout[c];
            let at = start + offset;
            Plane {
                data: &buf[at..at + w * h * bytes],
                stride: w * bytes,
                width: w,
                height: h,
                bytes,
                depth,
            }
        })
    }
    let mut s = Series::default();
    for i in 0..FRAMES {
        // Two bands: the threaded path is the one the tools use.
        s.push(&measure(
            &planes(&r, i * frame, layout, bytes, depth),
            &planes(&d, i * frame, layout, bytes, depth),
            2,
        ));
    }
    s
}

fn assert_agree(case: &str, ssim: [f64; 4], psnr: [Option<f64>; 4], ff: &Peer) {
    let names = ["Y", "U", "V", "All"];
    for i in 0..4 {
        assert!(
            (ssim[i] - ff.ssim[i]).abs() < 1e-4,
            "{case}: SSIM {} deliver {}, ffmpeg {}",
            names[i],
            ssim[i],
            ff.ssim[i]
        );
        match (psnr[i], ff.psnr[i]) {
            (Some(a), Some(b)) => assert!(
                (a - b).abs() < 0.01,
                "{case}: PSNR {} deliver {a}, ffmpeg {b}",
                names[i]
            ),
            (None, None) => {}
            other => panic!("{case}: PSNR {} deliver/ffmpeg {other:?}", names[i]),
        }
    }
}

fn agree(pix_fmt: &str, crf: Option<u32>) {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, distorted) = pair(tmp.path(), pix_fmt, crf);
    let size = format!("{W}x{H}");
    let ff = peer(
        &raw_input(&distorted, pix_fmt, &size),
        &raw_input(&reference, pix_fmt, &size),
    );
    let s = deliver_raw(&reference, &distorted, pix_fmt).summary();
    let case = format!("{pix_fmt}, crf {crf:?}");
    assert_agree(
        &case,
        [s.ssim_y, s.ssim_u, s.ssim_v, s.ssim_all],
        [s.psnr_y, s.psnr_u, s.psnr_v, s.psnr_avg],
        &ff,
    );
    if crf.is_none() {
        assert_eq!(
            s.psnr_avg, None,
            "{case}: identical frames have infinite PSNR"
        );
        assert!((s.ssim_all - 1.0).abs() < 1e-6, "{case}: {}", s.ssim_all);
    } else {
        assert!(s.ssim_all < 1.0 && s.psnr_avg.is_some(), "{case}: {s:?}");
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

/// A small H.264 file of testsrc2 (BT.709-tagged, limited range).
fn h264(dir: &Path, name: &str, size: &str, crf: u32, pix_fmt: &str) -> PathBuf {
    let p = dir.join(name);
    let src = format!("testsrc2=size={size}:rate=25:duration=0.4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &src,
        "-vf",
        "scale=out_color_matrix=bt709:out_range=tv",
        "-c:v",
        "libx264",
        "-crf",
        &crf.to_string(),
        "-pix_fmt",
        pix_fmt,
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-color_range",
        "tv",
        p.to_str().unwrap(),
    ]);
    p
}

/// `deliver compare --json`: the parsed output, or the failed process's
/// stderr.
fn compare_json(plugins: &Path, reference: &Path, distorted: &Path) -> Result<Value, String> {
    let out = deliver(plugins)
        .args(["compare", "--json"])
        .arg(reference)
        .arg(distorted)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("compare --json prints JSON"))
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

#[test]
fn compare_cli_agrees_with_ffmpeg_on_every_plane() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    for pix_fmt in ["yuv420p", "yuv422p10le"] {
        let reference = h264(
            tmp.path(),
            &format!("ref-{pix_fmt}.mkv"),
            "320x240",
            10,
            pix_fmt,
        );
        let distorted = h264(
            tmp.path(),
            &format!("dist-{pix_fmt}.mkv"),
            "320x240",
            38,
            pix_fmt,
        );
        let ff = peer(
            &["-i", distorted.to_str().unwrap()],
            &["-i", reference.to_str().unwrap()],
        );
        let j = compare_json(&plugins, &reference, &distorted).unwrap();
        let s = &j["summary"];
        assert_eq!(j["frames"], 10, "{j}");
        assert_eq!(j["pix_fmt"], pix_fmt);
        assert_eq!(j["scaled"], false);
        assert_agree(
            &format!("deliver compare, {pix_fmt}"),
            ["ssim_y", "ssim_u", "ssim_v", "ssim_all"].map(|k| num(&s[k]).unwrap()),
            ["psnr_y", "psnr_u", "psnr_v", "psnr_avg"].map(|k| num(&s[k])),
            &ff,
        );
        // Per-frame series of every measure, one value per frame.
        for k in ["psnr_y", "psnr_avg", "ssim_v", "ssim_all", "delta_e_p99"] {
            assert_eq!(j["series"][k].as_array().unwrap().len(), 10, "{k}");
        }
        let de = &s["delta_e"];
        assert!(num(&de["mean"]).unwrap() > 0.0, "{de}");
        assert!(num(&de["max"]).unwrap() >= num(&de["p99"]).unwrap() - 0.01);
        assert_eq!(de["pixels_per_frame"], 80 * 60);
    }
}

#[test]
fn compare_scales_a_reference_of_another_size_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let reference = h264(tmp.path(), "ref.mkv", "320x240", 10, "yuv420p");
    let distorted = tmp.path().join("half.mkv");
    ffmpeg(&[
        "-i",
        reference.to_str().unwrap(),
        "-vf",
        "scale=160:120:flags=bilinear",
        "-c:v",
        "libx264",
        "-crf",
        "10",
        distorted.to_str().unwrap(),
    ]);
    let j = compare_json(&plugins, &reference, &distorted).unwrap();
    assert_eq!(j["scaled"], true);
    assert_eq!(
        (j["width"].as_u64(), j["height"].as_u64()),
        (Some(160), Some(120))
    );
    let notes = j["notes"].to_string();
    assert!(notes.contains("scaled from 320x240 to 160x120"), "{notes}");
    // The peer: FFmpeg scaling the reference itself, with its two bilinear
    // kernels (`bilinear` filters the whole footprint of a downscale,
    // `fast_bilinear` takes the nearest two samples). deliver's bilinear at
    // pixel centres (a 2×2 mean at half size) lies between the two.
    let ff = |flags: &str| {
        peer_with(
            &["-i", distorted.to_str().unwrap()],
            &["-i", reference.to_str().unwrap()],
            &format!("scale=160:120:flags={flags},"),
        )
    };
    let (lo, hi) = (ff("fast_bilinear"), ff("bilinear"));
    for (k, i) in [("ssim_y", 0), ("ssim_all", 3)] {
        let v = num(&j["summary"][k]).unwrap();
        assert!(
            v > lo.ssim[i] - 1e-4 && v < hi.ssim[i] + 1e-4,
            "{k} {v}: FFmpeg fast_bilinear {}, bilinear {}",
            lo.ssim[i],
            hi.ssim[i]
        );
    }
    // The text output says it too.
    let out = deliver(&plugins)
        .arg("compare")
        .arg(&reference)
        .arg(&distorted)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("note: reference scaled"), "{text}");
    assert!(text.contains("SSIM Y:") && text.contains("PSNR y:") && text.contains("ΔE2000 mean"));
}

#[test]
fn compare_counts_common_frames_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let reference = h264(tmp.path(), "ref.mkv", "320x240", 10, "yuv420p");
    let short = tmp.path().join("short.mkv");
    ffmpeg(&[
        "-i",
        reference.to_str().unwrap(),
        "-frames:v",
        "6",
        "-c:v",
        "libx264",
        short.to_str().unwrap(),
    ]);
    let j = compare_json(&plugins, &reference, &short).unwrap();
    assert_eq!(j["frames"], 6);
    let notes = j["notes"].to_string();
    assert!(
        notes.contains("frame counts differ") && notes.contains("distorted file ends after 6"),
        "{notes}"
    );
}

#[test]
fn compare_names_a_missing_file_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let reference = h264(tmp.path(), "ref.mkv", "320x240", 10, "yuv420p");
    let missing = tmp.path().join("no-such-file.mp4");
    for (a, b) in [(&reference, &missing), (&missing, &reference)] {
        let err = compare_json(&plugins, a, b).expect_err("a missing file must fail");
        assert!(
            err.contains(&format!("{}: cannot open", missing.display())),
            "{err}"
        );
    }
}

#[test]
fn delta_e_is_zero_on_identical_files() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let reference = h264(tmp.path(), "ref.mkv", "320x240", 20, "yuv420p");
    let j = compare_json(&plugins, &reference, &reference).unwrap();
    let s = &j["summary"];
    assert_eq!(s["psnr_avg"], Value::Null, "identical: infinite PSNR");
    for k in ["mean", "p99", "max"] {
        assert_eq!(num(&s["delta_e"][k]), Some(0.0), "{k}: {s}");
    }
}

/// The same samples tagged BT.601 instead of BT.709 (H.264 VUI rewritten,
/// the pictures bit-identical): SSIM and PSNR cannot see it, ΔE2000 must.
#[test]
fn delta_e_sees_a_matrix_mistag_that_ssim_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let reference = h264(tmp.path(), "ref.mkv", "320x240", 20, "yuv420p");
    let mistagged = tmp.path().join("bt601.mkv");
    ffmpeg(&[
        "-i",
        reference.to_str().unwrap(),
        "-c",
        "copy",
        "-bsf:v",
        "h264_metadata=matrix_coefficients=6",
        "-colorspace",
        "smpte170m",
        mistagged.to_str().unwrap(),
    ]);
    let j = compare_json(&plugins, &reference, &mistagged).unwrap();
    let s = &j["summary"];
    for k in ["ssim_y", "ssim_u", "ssim_v", "ssim_all"] {
        assert!(num(&s[k]).unwrap() > 1.0 - 1e-12, "{k}: {s}");
    }
    assert_eq!(s["psnr_avg"], Value::Null);
    let conv = j["distorted"]["delta_e_conversion"].as_str().unwrap();
    assert!(conv.starts_with("BT.601 matrix"), "{conv}");
    // ΔE00 ≈ 1 is a just-noticeable difference; decoding BT.709 colours
    // with BT.601 coefficients moves saturated colours by several units.
    let (mean, p99) = (
        num(&s["delta_e"]["mean"]).unwrap(),
        num(&s["delta_e"]["p99"]).unwrap(),
    );
    assert!(p99 > 3.0 && mean > 1.0, "mean {mean}, p99 {p99}");
}
