//! `deliver compare`: the quality of one file against another, as FFmpeg's
//! `ssim` and `psnr` filters measure it (every plane), plus ΔE2000.
//!
//! Both files are decoded by the loaded plugins' file decoders, each on its
//! own thread feeding a bounded channel, in the distorted file's native
//! pixel format (the decoder converts the reference). Frames pair in order.
//! Where the sizes differ the reference is scaled to the distorted size
//! (bilinear, per plane, on the reference's decoding thread) and the result
//! says so; where the frame counts differ the common frames are compared and
//! the result says so.
//!
//! ```no_run
//! # use deliver::{compare, plugins::Registry};
//! # use std::path::Path;
//! let reg = Registry::global(&deliver::plugins::default_dirs());
//! let c = compare::compare(reg, Path::new("master.mov"), Path::new("web.mp4"),
//!                          &compare::Options::default())?;
//! println!("{}", c.text());
//! # Ok::<(), compare::CompareError>(())
//! ```

use crate::deltae::{self, Lab, YuvToRgb};
use crate::plugins::Registry;
use crate::quality::{self, Picture, Plane, Series, Summary};
use crate::render::image::plane_size;
use crossbeam_channel::{bounded, Receiver, Sender};
use deliver_plugin_api::abi::{self, cap, media, pix};
use deliver_plugin_api::host::Frame;
use deliver_plugin_api::plugin::VideoView;
use std::path::{Path, PathBuf};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Compare at most this many frames.
    pub frames: Option<u64>,
    /// Measure ΔE2000 too (the costliest part).
    pub delta_e: bool,
    /// Threads for the metrics of one frame pair.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            frames: None,
            delta_e: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Why two files could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("no loaded plugin can decode media files (capability FILE_DECODE)")]
    NoDecoder,
    #[error("{path}: cannot open: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path}: no video stream")]
    NoVideo { path: PathBuf },
    #[error("{path}: decoding video frame {frame}: {message}")]
    Decode {
        path: PathBuf,
        frame: u64,
        message: String,
    },
    #[error("{path}: frame {frame} is {got}, the stream started as {expected}; one format per file is accepted")]
    FormatChange {
        path: PathBuf,
        frame: u64,
        got: String,
        expected: String,
    },
}

/// One file's side of a comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Side {
    pub file: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Native pixel format, as FFmpeg names it.
    pub pix_fmt: String,
    /// Frames decoded (for the longer file: the common frames plus one, as
    /// decoding stops there; see `notes`).
    pub frames_decoded: u64,
    /// Frame count from the container, if it declares one.
    pub container_frames: Option<u64>,
    /// How its pictures were converted to R'G'B' for ΔE.
    pub delta_e_conversion: Option<String>,
}

/// The result of [`compare`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub reference: Side,
    pub distorted: Side,
    /// The format both were measured in.
    pub pix_fmt: String,
    pub width: u32,
    pub height: u32,
    /// Whether the reference was scaled to the distorted size.
    pub scaled: bool,
    /// Frame pairs compared.
    pub frames: u64,
    /// Everything a reader must know to trust the numbers (scaling, frame
    /// count mismatch, format conversions).
    pub notes: Vec<String>,
    pub summary: Summary,
    pub series: Series,
}

/// A decoded picture copied out of the decoder (rows packed).
struct Owned {
    width: u32,
    height: u32,
    pix_fmt: u32,
    color: abi::ColorTags,
    /// Lines of the picture as decoded (before any scaling), for the
    /// untagged-matrix rule.
    source_height: u32,
    planes: [Vec<u8>; 3],
    strides: [usize; 3],
}

impl Owned {
    fn empty() -> Owned {
        Owned {
            width: 0,
            height: 0,
            pix_fmt: pix::NONE,
            color: abi::ColorTags::UNSPECIFIED,
            source_height: 0,
            planes: Default::default(),
            strides: [0; 3],
        }
    }

    fn picture(&self) -> Picture<'_> {
        let l = pix::layout(self.pix_fmt).expect("checked when decoded");
        std::array::from_fn(|c| {
            let (width, height) = plane_size(self.width, self.height, l, c);
            Plane {
                data: &self.planes[c],
                stride: self.strides[c],
                width,
                height,
                bytes: l.bytes_per_sample,
                depth: l.bit_depth,
            }
        })
    }

    /// Copies `v` (visible samples only) into this buffer.
    fn copy_from(&mut self, v: &VideoView<'_>, l: pix::Layout) {
        self.width = v.width;
        self.height = v.height;
        self.source_height = v.height;
        self.pix_fmt = v.pix_fmt;
        self.color = v.color;
        for c in 0..3 {
            let (w, h) = plane_size(v.width, v.height, l, c);
            let row = w * l.bytes_per_sample;
            let (src, stride) = v.planes[c];
            let dst = &mut self.planes[c];
            dst.clear();
            dst.reserve(row * h);
            for y in 0..h {
                dst.extend_from_slice(&src[y * stride..y * stride + row]);
            }
            self.strides[c] = row;
        }
    }

    /// `src` resized to `width`×`height` (same format), bilinear per plane.
    fn scale_from(&mut self, src: &Owned, width: u32, height: u32) {
        let l = pix::layout(src.pix_fmt).expect("checked when decoded");
        self.width = width;
        self.height = height;
        self.source_height = src.source_height;
        self.pix_fmt = src.pix_fmt;
        self.color = src.color;
        let sp = src.picture();
        for (c, s) in sp.iter().enumerate() {
            let (w, h) = plane_size(width, height, l, c);
            self.strides[c] = w * l.bytes_per_sample;
            resize_plane(s, w, h, &mut self.planes[c]);
        }
    }
}

/// Bilinear resize of one plane (8- or 16-bit samples), sampling at pixel
/// centres, 8-bit fixed-point weights.
fn resize_plane(src: &Plane<'_>, dw: usize, dh: usize, out: &mut Vec<u8>) {
    let (sw, sh) = (src.width, src.height);
    let pos = |d: usize, sd: usize, dd: usize| -> (usize, usize, u32) {
        let p = ((d as f64 + 0.5) * sd as f64 / dd as f64 - 0.5).max(0.0);
        let i = (p.floor() as usize).min(sd - 1);
        let f = (((p - i as f64) * 256.0) as u32).min(256);
        (i, (i + 1).min(sd - 1), f)
    };
    let xs: Vec<_> = (0..dw).map(|x| pos(x, sw, dw)).collect();
    let at = |x: usize, y: usize| -> u32 {
        if src.bytes == 1 {
            src.data[y * src.stride + x] as u32
        } else {
            let i = y * src.stride + 2 * x;
            u16::from_le_bytes([src.data[i], src.data[i + 1]]) as u32
        }
    };
    out.clear();
    out.reserve(dw * dh * src.bytes);
    for y in 0..dh {
        let (y0, y1, wy) = pos(y, sh, dh);
        for &(x0, x1, wx) in &xs {
            let a = at(x0, y0) * (256 - wx) + at(x1, y0) * wx;
            let b = at(x0, y1) * (256 - wx) + at(x1, y1) * wx;
            let v = (a * (256 - wy) + b * wy + 32768) >> 16;
            if src.bytes == 1 {
                out.push(v as u8);
            } else {
                out.extend_from_slice(&(v as u16).to_le_bytes());
            }
        }
    }
}

/// A file opened for comparison.
struct Opened {
    dec: deliver_plugin_api::host::FileDecoder,
    info: abi::MediaInfo,
    path: PathBuf,
}

fn open(reg: &Registry, path: &Path, pix_fmt: u32) -> Result<Opened, CompareError> {
    let choice = reg
        .find(cap::FILE_DECODE, "*", None)
        .ok_or(CompareError::NoDecoder)?;
    let cfg = abi::DecoderConfig {
        video_pix_fmt: pix_fmt,
        ..crate::encode::decoder_config(media::VIDEO, 0, 0)
    };
    let (dec, info) = choice
        .plugin
        .open_file(&path.to_string_lossy(), &cfg)
        .map_err(|e| CompareError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if info.has_video == 0 {
        return Err(CompareError::NoVideo {
            path: path.to_owned(),
        });
    }
    Ok(Opened {
        dec,
        info,
        path: path.to_owned(),
    })
}

fn describe(w: u32, h: u32, fmt: u32) -> String {
    format!("{w}x{h} {}", pix::name(fmt).unwrap_or("?"))
}

/// Decodes `o` onto `tx` (scaled to `size` when given), reusing the buffers
/// that come back on `recycle`. Stops after `limit` frames or when the
/// receiver hangs up.
fn decode_thread(
    mut o: Opened,
    size: Option<(u32, u32)>,
    limit: u64,
    tx: Sender<Result<Owned, CompareError>>,
    recycle: Receiver<Owned>,
) {
    let mut frame = 0u64;
    let mut first: Option<(u32, u32, u32)> = None;
    let mut decoded = Owned::empty();
    while frame < limit {
        let next = o.dec.next_frame().map_err(|e| CompareError::Decode {
            path: o.path.clone(),
            frame,
            message: e.to_string(),
        });
        let v = match next {
            Ok(None) => return,
            Ok(Some(Frame::Video(v))) => v,
            Ok(Some(Frame::Audio { .. })) => continue,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let now = (v.width, v.height, v.pix_fmt);
        let expected = *first.get_or_insert(now);
        let layout = pix::layout(v.pix_fmt).filter(|l| l.planes >= 3 && v.n_planes >= 3);
        let Some(l) = layout.filter(|_| now == expected) else {
            let _ = tx.send(Err(CompareError::FormatChange {
                path: o.path.clone(),
                frame,
                got: describe(now.0, now.1, now.2),
                expected: describe(expected.0, expected.1, expected.2),
            }));
            return;
        };
        let mut buf = recycle.try_recv().unwrap_or_else(|_| Owned::empty());
        match size {
            Some((w, h)) if (w, h) != (v.width, v.height) => {
                decoded.copy_from(&v, l);
                buf.scale_from(&decoded, w, h);
            }
            _ => buf.copy_from(&v, l),
        }
        if tx.send(Ok(buf)).is_err() {
            return;
        }
        frame += 1;
    }
}

/// Compares `distorted` with `reference`.
///
/// # Errors
/// A [`CompareError`] naming the file that cannot be opened or decoded.
pub fn compare(
    reg: &Registry,
    reference: &Path,
    distorted: &Path,
    opts: &Options,
) -> Result<Comparison, CompareError> {
    let dist = open(reg, distorted, pix::NONE)?;
    let mut notes = Vec::new();
    let native = dist.info.pix_fmt;
    let measure_fmt = match pix::layout(native) {
        Some(l) if l.planes >= 3 => native,
        _ => {
            notes.push(format!(
                "the distorted file's pixel format {} is not planar Y'CbCr 8-12 bit here: both files measured as yuv444p",
                abi::name_str(&dist.info.pix_fmt_name)
            ));
            pix::YUV444P
        }
    };
    let dist = if measure_fmt == native {
        dist
    } else {
        drop(dist);
        open(reg, distorted, measure_fmt)?
    };
    let refe = open(reg, reference, measure_fmt)?;
    let (dw, dh) = (dist.info.width, dist.info.height);
    let (rw, rh) = (refe.info.width, refe.info.height);
    let fmt_name = pix::name(measure_fmt).unwrap_or("?").to_owned();
    let side = |o: &Opened| Side {
        file: o.path.clone(),
        width: o.info.width,
        height: o.info.height,
        pix_fmt: abi::name_str(&o.info.pix_fmt_name).to_owned(),
        frames_decoded: 0,
        container_frames: (o.info.n_frames >= 0).then_some(o.info.n_frames as u64),
        delta_e_conversion: None,
    };
    let (mut rside, mut dside) = (side(&refe), side(&dist));
    if rside.pix_fmt != fmt_name {
        notes.push(format!(
            "reference decoded as {fmt_name} (native {}) by the decoder's converter",
            rside.pix_fmt
        ));
    }
    let scaled = (rw, rh) != (dw, dh);
    if scaled {
        notes.push(format!(
            "reference scaled from {rw}x{rh} to {dw}x{dh} (bilinear, per plane) to match the distorted file"
        ));
    }
    let limit = opts.frames.unwrap_or(u64::MAX);
    // One frame more than compared, so that a longer file shows itself.
    let read_limit = limit.saturating_add(1);
    let (rtx, rrx) = bounded(4);
    let (dtx, drx) = bounded(4);
    let (rback_tx, rback_rx) = bounded::<Owned>(8);
    let (dback_tx, dback_rx) = bounded::<Owned>(8);
    let mut series = Series::default();
    let mut frames = 0u64;
    let mut ref_end = false;
    let mut dist_end = false;
    let mut failure = None;
    std::thread::scope(|s| {
        let size = Some((dw, dh));
        std::thread::Builder::new()
            .name("decode-reference".into())
            .spawn_scoped(s, move || {
                decode_thread(refe, size, read_limit, rtx, rback_rx)
            })
            .expect("spawning a decoder thread");
        std::thread::Builder::new()
            .name("decode-distorted".into())
            .spawn_scoped(s, move || {
                decode_thread(dist, None, read_limit, dtx, dback_rx)
            })
            .expect("spawning a decoder thread");
        let mut de = DeltaState::default();
        loop {
            let (r, d) = (rrx.recv().ok(), drx.recv().ok());
            let (r, d) = match (r, d) {
                (Some(Err(e)), _) | (_, Some(Err(e))) => {
                    failure = Some(e);
                    break;
                }
                (Some(Ok(r)), Some(Ok(d))) => (r, d),
                (r, d) => {
                    ref_end = r.is_none();
                    dist_end = d.is_none();
                    break;
                }
            };
            if frames == limit {
                break;
            }
            let (rp, dp) = (r.picture(), d.picture());
            let threads = opts.threads.max(1);
            if opts.delta_e {
                // ΔE on one core, SSIM/PSNR on the others.
                let (q, lab) = std::thread::scope(|s| {
                    let h = s.spawn(|| de.measure(&r, &d));
                    let q = quality::measure(&rp, &dp, (threads - 1).max(1));
                    (q, h.join().expect("ΔE thread"))
                });
                series.push(&q);
                let (values, method) = lab;
                series.push_delta_e(values, method);
            } else {
                series.push(&quality::measure(&rp, &dp, threads));
            }
            frames += 1;
            rside.frames_decoded = frames;
            dside.frames_decoded = frames;
            let _ = rback_tx.try_send(r);
            let _ = dback_tx.try_send(d);
        }
        if let Some((rc, dc)) = &de.conv {
            rside.delta_e_conversion = Some(rc.describe().to_owned());
            dside.delta_e_conversion = Some(dc.describe().to_owned());
        }
        // Hang up: the decoders stop at their next frame.
        drop(rrx);
        drop(drx);
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if frames < limit && ref_end != dist_end {
        let (short, long) = if ref_end {
            ("reference", "distorted")
        } else {
            ("distorted", "reference")
        };
        if ref_end {
            dside.frames_decoded = frames + 1;
        } else {
            rside.frames_decoded = frames + 1;
        }
        notes.push(format!(
            "frame counts differ: the {short} file ends after {frames} frames, the {long} file has more; compared the first {frames}"
        ));
    }
    if frames == 0 {
        notes.push("no frames to compare".into());
    }
    Ok(Comparison {
        reference: rside,
        distorted: dside,
        pix_fmt: fmt_name,
        width: dw,
        height: dh,
        scaled,
        frames,
        notes,
        summary: series.summary(),
        series,
    })
}

/// ΔE buffers and conversions, kept across frames.
#[derive(Default)]
struct DeltaState {
    conv: Option<(YuvToRgb, YuvToRgb)>,
    tags: Option<(abi::ColorTags, abi::ColorTags)>,
    method: String,
    lab_r: Vec<Lab>,
    lab_d: Vec<Lab>,
    values: Vec<f32>,
}

impl DeltaState {
    fn measure(&mut self, r: &Owned, d: &Owned) -> (&mut [f32], &str) {
        let l = pix::layout(d.pix_fmt).expect("checked when decoded");
        let grid = deltae::Grid::new(d.width as usize, d.height as usize);
        if self.tags != Some((r.color, d.color)) {
            let rc = YuvToRgb::new(r.color, r.source_height, l.bit_depth);
            let dc = YuvToRgb::new(d.color, d.source_height, l.bit_depth);
            self.method = format!(
                "{}; reference: {}; distorted: {} (each by its own tags); {}",
                grid.describe(),
                rc.describe(),
                dc.describe(),
                deltae::PIPELINE
            );
            self.conv = Some((rc, dc));
            self.tags = Some((r.color, d.color));
        }
        let (rc, dc) = self.conv.as_ref().expect("set above");
        let shift = (l.chroma_shift_x, l.chroma_shift_y);
        deltae::lab_of_picture(&r.picture(), shift, rc, &grid, &mut self.lab_r);
        deltae::lab_of_picture(&d.picture(), shift, dc, &grid, &mut self.lab_d);
        deltae::delta_e(&self.lab_r, &self.lab_d, &mut self.values);
        (&mut self.values, &self.method)
    }
}

/// SSIM in dB, as FFmpeg prints it beside the value.
fn ssim_db(v: f64) -> f64 {
    -10.0 * (1.0 - v).log10()
}

fn psnr_text(p: Option<f64>) -> String {
    p.map_or("inf".to_owned(), |v| format!("{v:.2}"))
}

impl Comparison {
    /// FFmpeg-like text: the filters' summary lines, then ΔE2000.
    pub fn text(&self) -> String {
        let s = &self.summary;
        let mut t = format!(
            "reference: {} ({}x{} {})\ndistorted: {} ({}x{} {})\ncompared {} frames as {}x{} {}\n",
            self.reference.file.display(),
            self.reference.width,
            self.reference.height,
            self.reference.pix_fmt,
            self.distorted.file.display(),
            self.distorted.width,
            self.distorted.height,
            self.distorted.pix_fmt,
            self.frames,
            self.width,
            self.height,
            self.pix_fmt
        );
        for n in &self.notes {
            t += &format!("note: {n}\n");
        }
        t += &format!(
            "SSIM Y:{:.6} ({:.6}) U:{:.6} ({:.6}) V:{:.6} ({:.6}) All:{:.6} ({:.6})\n",
            s.ssim_y,
            ssim_db(s.ssim_y),
            s.ssim_u,
            ssim_db(s.ssim_u),
            s.ssim_v,
            ssim_db(s.ssim_v),
            s.ssim_all,
            ssim_db(s.ssim_all)
        );
        let avg = self
            .series
            .psnr_avg
            .iter()
            .map(|p| p.unwrap_or(f64::INFINITY));
        let (min, max) = avg.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let finite = |v: f64| v.is_finite().then_some(v);
        t += &format!(
            "PSNR y:{} u:{} v:{} average:{} min:{} max:{}\n",
            psnr_text(s.psnr_y),
            psnr_text(s.psnr_u),
            psnr_text(s.psnr_v),
            psnr_text(s.psnr_avg),
            psnr_text(finite(min)),
            psnr_text(finite(max))
        );
        if let Some(d) = &s.delta_e {
            t += &format!(
                "ΔE2000 mean {:.3} p99 {:.2} max {:.3} (frame {})\nΔE2000 method: {}\n",
                d.mean, d.p99, d.max, d.max_frame, d.method
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_flat_planes_flat_and_halves_ramps() {
        let data: Vec<u8> = vec![77; 64 * 32];
        let p = Plane {
            data: &data,
            stride: 64,
            width: 64,
            height: 32,
            bytes: 1,
            depth: 8,
        };
        let mut out = Vec::new();
        resize_plane(&p, 40, 20, &mut out);
        assert_eq!(out.len(), 800);
        assert!(out.iter().all(|&v| v == 77));
        // 16-bit: a horizontal ramp 0, 4, 8, … halved in width averages
        // neighbouring pairs: 2, 10, 18, …
        let ramp: Vec<u8> = (0..8u16)
            .flat_map(|x| (x * 4).to_le_bytes())
            .cycle()
            .take(8 * 2 * 2)
            .collect();
        let p16 = Plane {
            data: &ramp,
            stride: 16,
            width: 8,
            height: 2,
            bytes: 2,
            depth: 10,
        };
        resize_plane(&p16, 4, 2, &mut out);
        let v: Vec<u16> = out
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(v, vec![2, 10, 18, 26, 2, 10, 18, 26]);
    }
}
