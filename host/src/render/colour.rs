//! Colour management: transfer functions, primaries conversion, and the
//! mapping from the tags files carry (FFmpeg's numbering, as the plugin ABI
//! passes them) to what the compositor works in.
//!
//! The working space is linear light in the canvas's primaries. Sources are
//! linearized by their own tags when they are loaded; outputs are encoded by
//! the deliverable's tags when they are converted (`render::convert`).
//!
//! # Untagged sources
//! A file that does not say what it is gets, per missing tag, the rule
//! FFmpeg and most players follow, and the report says so:
//! - matrix: BT.709 when the picture is taller than 576 lines, else BT.601
//!   (swscale's and the players' rule, which the decoder's conversion
//!   followed);
//! - primaries: BT.709 from 720 lines up; below, BT.601 625 (BT.470 BG) at
//!   25/50 fps, else SMPTE 170M;
//! - transfer: the BT.709 curve (the same curve BT.601 uses);
//! - range: limited for Y'CbCr sources, full for RGB ones (PNG, JPEG stills
//!   are full range, sRGB).

use crate::manifest::model::{Primaries, Transfer};

/// FFmpeg `AVColorPrimaries` → ours; `None` for unspecified or unsupported.
pub fn primaries_from_ffmpeg(v: u32) -> Option<Primaries> {
    match v {
        1 => Some(Primaries::Bt709),
        9 => Some(Primaries::Bt2020),
        6 | 7 => Some(Primaries::Smpte170m),
        5 => Some(Primaries::Bt470bg),
        _ => None,
    }
}

pub fn primaries_to_ffmpeg(p: Primaries) -> u32 {
    match p {
        Primaries::Bt709 => 1,
        Primaries::Bt2020 => 9,
        Primaries::Smpte170m => 6,
        Primaries::Bt470bg => 5,
    }
}

/// FFmpeg `AVColorTransferCharacteristic` → ours.
pub fn transfer_from_ffmpeg(v: u32) -> Option<Transfer> {
    match v {
        1 | 6 | 14 | 15 => Some(Transfer::Bt709),
        13 => Some(Transfer::Srgb),
        8 => Some(Transfer::Linear),
        4 => Some(Transfer::Gamma22),
        5 => Some(Transfer::Gamma28),
        _ => None,
    }
}

pub fn transfer_to_ffmpeg(t: Transfer) -> u32 {
    match t {
        Transfer::Bt709 => 1,
        Transfer::Srgb => 13,
        Transfer::Linear => 8,
        Transfer::Gamma22 => 4,
        Transfer::Gamma28 => 5,
    }
}

/// The BT.709/BT.2020 OETF's constants at full precision (BT.2020 Table 4),
/// so that the two segments meet: 1.099 and 0.018 leave a step of 2·10⁻⁴.
pub const BT709_ALPHA: f32 = 1.099_296_8;
pub const BT709_BETA: f32 = 0.018_053_968;

/// Encoded value → linear light.
#[inline]
pub fn eotf(t: Transfer, e: f32) -> f32 {
    match t {
        // Inverse of the BT.709 OETF (scene light), so that a source encoded
        // with the same curve as the output passes through unchanged.
        Transfer::Bt709 => {
            if e < 4.5 * BT709_BETA {
                e / 4.5
            } else {
                ((e + BT709_ALPHA - 1.0) / BT709_ALPHA).powf(1.0 / 0.45)
            }
        }
        Transfer::Srgb => {
            if e <= 0.04045 {
                e / 12.92
            } else {
                ((e + 0.055) / 1.055).powf(2.4)
            }
        }
        Transfer::Linear => e,
        Transfer::Gamma22 => e.max(0.0).powf(2.2),
        Transfer::Gamma28 => e.max(0.0).powf(2.8),
    }
}

/// Linear light → encoded value.
#[inline]
pub fn oetf(t: Transfer, l: f32) -> f32 {
    match t {
        Transfer::Bt709 => {
            if l < BT709_BETA {
                4.5 * l
            } else {
                BT709_ALPHA * l.powf(0.45) - (BT709_ALPHA - 1.0)
            }
        }
        Transfer::Srgb => {
            if l <= 0.003_130_8 {
                12.92 * l
            } else {
                1.055 * l.powf(1.0 / 2.4) - 0.055
            }
        }
        Transfer::Linear => l,
        Transfer::Gamma22 => l.max(0.0).powf(1.0 / 2.2),
        Transfer::Gamma28 => l.max(0.0).powf(1.0 / 2.8),
    }
}

/// CIE xy of the red, green, blue primaries and the white point (D65 for all
/// supported sets).
fn chromaticities(p: Primaries) -> [[f64; 2]; 4] {
    const D65: [f64; 2] = [0.3127, 0.3290];
    match p {
        Primaries::Bt709 => [[0.640, 0.330], [0.300, 0.600], [0.150, 0.060], D65],
        Primaries::Bt2020 => [[0.708, 0.292], [0.170, 0.797], [0.131, 0.046], D65],
        Primaries::Smpte170m => [[0.630, 0.340], [0.310, 0.595], [0.155, 0.070], D65],
        Primaries::Bt470bg => [[0.640, 0.330], [0.290, 0.600], [0.150, 0.060], D65],
    }
}

type M3 = [[f64; 3]; 3];

fn mul(a: &M3, b: &M3) -> M3 {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn invert(m: &M3) -> M3 {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    [
        [
            c(1, 1, 2, 2) / det,
            -c(0, 1, 2, 2) / det,
            c(0, 1, 1, 2) / det,
        ],
        [
            -c(1, 0, 2, 2) / det,
            c(0, 0, 2, 2) / det,
            -c(0, 0, 1, 2) / det,
        ],
        [
            c(1, 0, 2, 1) / det,
            -c(0, 0, 2, 1) / det,
            c(0, 0, 1, 1) / det,
        ],
    ]
}

/// Linear RGB in primaries `p` → CIE XYZ (SMPTE RP 177).
pub fn rgb_to_xyz(p: Primaries) -> [[f64; 3]; 3] {
    let c = chromaticities(p);
    let xyz = |xy: [f64; 2]| [xy[0] / xy[1], 1.0, (1.0 - xy[0] - xy[1]) / xy[1]];
    let (r, g, b, w) = (xyz(c[0]), xyz(c[1]), xyz(c[2]), xyz(c[3]));
    let m = [[r[0], g[0], b[0]], [r[1], g[1], b[1]], [r[2], g[2], b[2]]];
    let inv = invert(&m);
    let s: Vec<f64> = (0..3)
        .map(|i| (0..3).map(|k| inv[i][k] * w[k]).sum())
        .collect();
    let mut out = m;
    for row in out.iter_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v *= s[j];
        }
    }
    out
}

/// The 3×3 matrix taking linear RGB in `from` to linear RGB in `to`
/// (identity when they are the same set).
pub fn primaries_matrix(from: Primaries, to: Primaries) -> [[f32; 3]; 3] {
    let m = if from == to {
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    } else {
        mul(&invert(&rgb_to_xyz(to)), &rgb_to_xyz(from))
    };
    m.map(|r| r.map(|v| v as f32))
}

/// Luma coefficients (Kr, Kb) of a Y'CbCr matrix, FFmpeg numbering
/// (`AVColorSpace`); `None` for unsupported ones.
pub fn matrix_coefficients(matrix: u32) -> Option<(f32, f32)> {
    match matrix {
        1 => Some((0.2126, 0.0722)),
        5 | 6 => Some((0.299, 0.114)),
        9 => Some((0.2627, 0.0593)),
        _ => None,
    }
}

/// What a source is, after the rules for untagged files; `assumed` lists
/// each tag that was missing and what was taken instead, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceColour {
    pub primaries: Primaries,
    pub transfer: Transfer,
    /// FFmpeg `AVColorSpace` of the Y'CbCr matrix the decoder used.
    pub matrix: u32,
    /// 1 limited, 2 full.
    pub range: u32,
    pub assumed: Vec<String>,
}

/// Applies the module's rules for missing tags to a source's tags.
/// `rgb`: the file stores RGB (stills, RGB video), so matrix and range do
/// not apply (range is full).
pub fn resolve_source(
    tags: deliver_plugin_api::abi::ColorTags,
    height: u32,
    frame_rate: f64,
    rgb: bool,
) -> SourceColour {
    let mut assumed = Vec::new();
    let hd = height >= 720;
    let primaries = primaries_from_ffmpeg(tags.primaries).unwrap_or_else(|| {
        let p = if hd {
            Primaries::Bt709
        } else if (frame_rate - 25.0).abs() < 0.01 || (frame_rate - 50.0).abs() < 0.01 {
            Primaries::Bt470bg
        } else {
            Primaries::Smpte170m
        };
        assumed.push(format!(
            "primaries {} taken as {:?} ({} lines, {frame_rate:.3} fps)",
            tag_text(tags.primaries),
            p,
            height
        ));
        p
    });
    let transfer = transfer_from_ffmpeg(tags.transfer).unwrap_or_else(|| {
        let t = if rgb { Transfer::Srgb } else { Transfer::Bt709 };
        assumed.push(format!(
            "transfer {} taken as {t:?}",
            tag_text(tags.transfer)
        ));
        t
    });
    let (matrix, range) = if rgb {
        (0, 2)
    } else {
        let matrix = if matrix_coefficients(tags.matrix).is_some() {
            tags.matrix
        } else {
            let hd = height > 576;
            let m = if hd { 1 } else { 6 };
            assumed.push(format!(
                "matrix {} taken as {} ({} lines)",
                tag_text(tags.matrix),
                if hd { "BT.709" } else { "BT.601" },
                height
            ));
            m
        };
        let range = if tags.range == 1 || tags.range == 2 {
            tags.range
        } else {
            assumed.push("range unspecified taken as limited".to_owned());
            1
        };
        (matrix, range)
    };
    SourceColour {
        primaries,
        transfer,
        matrix,
        range,
        assumed,
    }
}

fn tag_text(v: u32) -> String {
    if v == 2 || v == 0 {
        "unspecified".to_owned()
    } else {
        format!("{v} (not supported)")
    }
}

/// Converts an encoded straight-alpha RGBA8 image in `(primaries, transfer)`
/// to the linear premultiplied working image in `canvas` primaries. A
/// 256-entry table linearizes each channel; alpha is linear already.
pub fn linearize_rgba8(
    data: &[u8],
    width: u32,
    height: u32,
    transfer: Transfer,
    from: Primaries,
    canvas: Primaries,
) -> crate::render::plan::LinearImage {
    let mut out = crate::render::plan::LinearImage::new(0, 0);
    linearize_rgba8_into(data, width, height, transfer, from, canvas, &mut out);
    out
}

/// [`linearize_rgba8`] into `out`, reusing its allocation when it is the
/// right size (a new frame of a video every frame).
pub fn linearize_rgba8_into(
    data: &[u8],
    width: u32,
    height: u32,
    transfer: Transfer,
    from: Primaries,
    canvas: Primaries,
    out: &mut crate::render::plan::LinearImage,
) {
    let lut: Vec<f32> = (0..256).map(|v| eotf(transfer, v as f32 / 255.0)).collect();
    let m = primaries_matrix(from, canvas);
    let same = from == canvas;
    if out.data.len() != width as usize * height as usize {
        *out = crate::render::plan::LinearImage::new(width, height);
    }
    (out.width, out.height) = (width, height);
    let run = |out: &mut [[f32; 4]], data: &[u8]| {
        for (o, p) in out.iter_mut().zip(data.chunks_exact(4)) {
            let a = p[3] as f32 / 255.0;
            let mut c = [lut[p[0] as usize], lut[p[1] as usize], lut[p[2] as usize]];
            if !same {
                c = apply(&m, c);
            }
            *o = [c[0] * a, c[1] * a, c[2] * a, a];
        }
    };
    // Bands of rows on every core: sources are linearized on the frame's
    // critical path.
    let (w, h) = (width as usize, height as usize);
    let threads = super::threads_for(h / 64);
    let rows = h.div_ceil(threads).max(1);
    let n = (w * h).min(data.len() / 4);
    std::thread::scope(|scope| {
        let mut bands = out.data[..n]
            .chunks_mut(rows * w.max(1))
            .zip(data[..4 * n].chunks(4 * rows * w.max(1)));
        let first = bands.next();
        for (o, d) in bands {
            scope.spawn(move || run(o, d));
        }
        if let Some((o, d)) = first {
            run(o, d);
        }
    });
}

/// `m · c`.
#[inline]
pub fn apply(m: &[[f32; 3]; 3], c: [f32; 3]) -> [f32; 3] {
    [
        m[0][0] * c[0] + m[0][1] * c[1] + m[0][2] * c[2],
        m[1][0] * c[0] + m[1][1] * c[1] + m[1][2] * c[2],
        m[2][0] * c[0] + m[2][1] * c[1] + m[2][2] * c[2],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_functions_invert_each_other() {
        for t in [
            Transfer::Bt709,
            Transfer::Srgb,
            Transfer::Linear,
            Transfer::Gamma22,
            Transfer::Gamma28,
        ] {
            for i in 0..=1000 {
                let e = i as f32 / 1000.0;
                let back = oetf(t, eotf(t, e));
                assert!((back - e).abs() < 2e-5, "{t:?} {e} → {back}");
            }
        }
        // Known points: BT.709 mid-grey 0.18 encodes to 0.409; sRGB 0.5 is
        // 0.214 linear.
        assert!((oetf(Transfer::Bt709, 0.18) - 0.4090).abs() < 1e-3);
        assert!((eotf(Transfer::Srgb, 0.5) - 0.2140).abs() < 1e-3);
    }

    #[test]
    fn bt709_to_xyz_matches_the_standard_matrix() {
        let m = rgb_to_xyz(Primaries::Bt709);
        // ITU-R BT.709 / sRGB D65 RGB→XYZ, second row = luma weights.
        let want = [
            [0.4124, 0.3576, 0.1805],
            [0.2126, 0.7152, 0.0722],
            [0.0193, 0.1192, 0.9505],
        ];
        for i in 0..3 {
            for j in 0..3 {
                assert!((m[i][j] - want[i][j]).abs() < 2e-4, "{i},{j}: {}", m[i][j]);
            }
        }
    }

    #[test]
    fn bt709_into_bt2020_matches_bt2087() {
        // ITU-R BT.2087 Table: linear BT.709 → BT.2020.
        let m = primaries_matrix(Primaries::Bt709, Primaries::Bt2020);
        let want = [
            [0.6274, 0.3293, 0.0433],
            [0.0691, 0.9195, 0.0114],
            [0.0164, 0.0880, 0.8956],
        ];
        for i in 0..3 {
            for j in 0..3 {
                assert!((m[i][j] - want[i][j]).abs() < 2e-4, "{i},{j}: {}", m[i][j]);
            }
        }
        // White stays white.
        let w = apply(&m, [1.0, 1.0, 1.0]);
        assert!(w.iter().all(|v| (v - 1.0).abs() < 1e-4), "{w:?}");
    }

    #[test]
    fn untagged_sd_and_hd_sources_follow_the_documented_rule() {
        let u = deliver_plugin_api::abi::ColorTags::UNSPECIFIED;
        let hd = resolve_source(u, 1080, 25.0, false);
        assert_eq!(
            (hd.primaries, hd.matrix, hd.range),
            (Primaries::Bt709, 1, 1)
        );
        assert_eq!(hd.assumed.len(), 4, "{:?}", hd.assumed);
        let pal = resolve_source(u, 576, 25.0, false);
        assert_eq!((pal.primaries, pal.matrix), (Primaries::Bt470bg, 6));
        let ntsc = resolve_source(u, 480, 30000.0 / 1001.0, false);
        assert_eq!(ntsc.primaries, Primaries::Smpte170m);
        let png = resolve_source(u, 1080, 25.0, true);
        assert_eq!((png.transfer, png.range), (Transfer::Srgb, 2));
        let tagged = resolve_source(
            deliver_plugin_api::abi::ColorTags::BT709_LIMITED,
            480,
            25.0,
            false,
        );
        assert!(tagged.assumed.is_empty());
        assert_eq!(tagged.primaries, Primaries::Bt709);
    }
}
