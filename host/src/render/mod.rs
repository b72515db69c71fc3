//! The render stage: turns a manifest's timeline into canvas frames (the
//! [`timeline`] makes a frame plan, a [`plan::Renderer`] draws it: the CPU
//! reference in [`cpu`], wgpu in [`gpu`]) and converts them to every
//! deliverable's picture format ([`convert`]); mixes its audio
//! ([`audio`]), once per job. Every deliverable is fed from this one render.
//!
//! This module keeps what both renderers share: the errors and the test
//! generators (bars, the moving pattern) the timeline draws once.

pub mod audio;
pub mod colour;
pub mod convert;
pub mod cpu;
pub mod gpu;
pub mod image;
pub mod lut;
pub mod plan;
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd;
pub mod timeline;
pub mod ycbcr;

use crate::plugins::Registry;
pub use image::{Rgba8, Yuv};
use std::path::{Path, PathBuf};

/// Threads for a frame's work: the machine's, at most one per `units`
/// (and at least one).
pub(crate) fn threads_for(units: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(units)
        .max(1)
}

/// Whether this CPU runs the AVX2 kernels (x86-64 with AVX2; never
/// elsewhere).
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A render failure: names the clip and the file.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(
        "no loaded plugin can decode media files (file-decode capability); loaded: {available}"
    )]
    NoDecoder { available: String },
    #[error("cannot open media {path} (track {track}, clip {clip}): {reason}")]
    Open {
        path: PathBuf,
        track: String,
        clip: usize,
        reason: String,
    },
    #[error("media {path} has no video stream (track {track}, clip {clip})")]
    NoVideo {
        path: PathBuf,
        track: String,
        clip: usize,
    },
    #[error("track {track}, clip {clip}: {what} are not drawn by this renderer")]
    Unsupported {
        track: String,
        clip: usize,
        what: &'static str,
    },
    #[error("decoding {path} failed: {reason}")]
    Decode { path: PathBuf, reason: String },
    /// A still, a font or a LUT that cannot be loaded.
    #[error("cannot load the {what} {path} (track {track}, clip {clip}): {reason}")]
    Load {
        what: &'static str,
        path: PathBuf,
        track: String,
        clip: usize,
        reason: String,
    },
}

/// Which renderer draws a job's frames (`deliver render --renderer`, the
/// `DELIVER_RENDERER` environment variable; default `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RendererChoice {
    /// The CPU reference ([`cpu::CpuRenderer`]).
    Cpu,
    /// wgpu ([`gpu::GpuRenderer`]); the job fails if no adapter opens.
    Gpu,
    /// A hardware GPU adapter when there is one, else the CPU: a software
    /// adapter (Mesa's lavapipe, WARP, SwiftShader) runs the same kernels
    /// many times slower than the CPU reference, so it is never chosen here.
    #[default]
    Auto,
}

impl RendererChoice {
    pub fn parse(s: &str) -> Option<RendererChoice> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Some(RendererChoice::Cpu),
            "gpu" => Some(RendererChoice::Gpu),
            "auto" | "" => Some(RendererChoice::Auto),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RendererChoice::Cpu => "cpu",
            RendererChoice::Gpu => "gpu",
            RendererChoice::Auto => "auto",
        }
    }

    /// `DELIVER_RENDERER`, else `auto`.
    ///
    /// # Errors
    /// A value that is not `cpu`, `gpu` or `auto`, named.
    pub fn from_env() -> Result<RendererChoice, String> {
        match std::env::var("DELIVER_RENDERER") {
            Err(_) => Ok(RendererChoice::Auto),
            Ok(v) => RendererChoice::parse(&v).ok_or_else(|| {
                format!("DELIVER_RENDERER = {v:?}: expected `cpu`, `gpu` or `auto`")
            }),
        }
    }
}

/// What `auto` found, probed once per process: the hardware adapter's
/// name, or why the CPU draws.
static AUTO_PROBE: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();

/// Opens the renderer `choice` names for a canvas in `primaries`. `auto`
/// probes the adapters once per process and logs its choice once.
///
/// # Errors
/// `gpu` asked for and no adapter opens (the reason, from wgpu).
pub fn open_renderer(
    choice: RendererChoice,
    primaries: crate::manifest::model::Primaries,
) -> Result<Box<dyn plan::Renderer>, String> {
    let gpu = || -> Result<Box<dyn plan::Renderer>, String> {
        let mut g = gpu::GpuRenderer::new()?;
        g.set_canvas_primaries(primaries);
        Ok(Box::new(g))
    };
    match choice {
        RendererChoice::Cpu => Ok(Box::new(cpu::CpuRenderer::new(primaries))),
        RendererChoice::Gpu => gpu(),
        RendererChoice::Auto => {
            let probe = AUTO_PROBE.get_or_init(|| {
                let found = match gpu::GpuRenderer::new() {
                    Ok(g) if g.is_software() => Err(format!(
                        "the only GPU adapter is a software rasterizer ({}), slower than the CPU reference",
                        g.adapter_name()
                    )),
                    Ok(g) => Ok(g.adapter_name().to_owned()),
                    Err(e) => Err(e),
                };
                match &found {
                    Ok(name) => tracing::info!("renderer auto: the GPU ({name})"),
                    Err(why) => tracing::info!("renderer auto: the CPU reference ({why})"),
                }
                found
            });
            match probe {
                Ok(_) => gpu().or_else(|e| {
                    tracing::warn!(
                        "the GPU renderer did not open ({e}); this job renders on the CPU"
                    );
                    Ok(Box::new(cpu::CpuRenderer::new(primaries)))
                }),
                Err(_) => Ok(Box::new(cpu::CpuRenderer::new(primaries))),
            }
        }
    }
}

/// The picture size of a media file, as the file decoder reads it: the
/// [`crate::manifest::MediaProbe`] of timelines that name no canvas size.
pub fn probe_size(reg: &Registry, path: &Path) -> Option<(u32, u32)> {
    timeline::probe_size(reg, path)
}

/// SMPTE RP 219-style 75 % bars: seven bars over the top two thirds, the
/// reverse castellations, then -I / white / +Q / black with a PLUGE.
pub fn bars(w: u32, h: u32) -> Rgba8 {
    const B75: [[u8; 3]; 7] = [
        [191, 191, 191],
        [191, 191, 0],
        [0, 191, 191],
        [0, 191, 0],
        [191, 0, 191],
        [191, 0, 0],
        [0, 0, 191],
    ];
    const CASTLE: [[u8; 3]; 7] = [
        [0, 0, 191],
        [19, 19, 19],
        [191, 0, 191],
        [19, 19, 19],
        [0, 191, 191],
        [19, 19, 19],
        [191, 191, 191],
    ];
    let mut img = Rgba8::new(w, h);
    let (wu, hu) = (w as usize, h as usize);
    let top = hu * 2 / 3;
    let mid = hu * 3 / 4;
    for y in 0..hu {
        for x in 0..wu {
            let bar = (x * 7 / wu).min(6);
            let c = if y < top {
                B75[bar]
            } else if y < mid {
                CASTLE[bar]
            } else {
                // Bottom row: -I, white, +Q, black, then the PLUGE steps.
                let q = x * 6 / wu;
                match q {
                    0 => [0, 33, 76],
                    1 => [255, 255, 255],
                    2 => [50, 0, 106],
                    4 => {
                        let p = (x * 18 / wu) % 3;
                        [[9, 9, 9], [19, 19, 19], [29, 29, 29]][p]
                    }
                    _ => [19, 19, 19],
                }
            };
            let i = (y * wu + x) * 4;
            img.data[i..i + 4].copy_from_slice(&[c[0], c[1], c[2], 255]);
        }
    }
    img
}

/// The still part of the moving test pattern: smooth colour ramps (red
/// across, green down, blue against both), so that banding, range and
/// matrix errors show.
pub fn pattern_background(w: u32, h: u32) -> Rgba8 {
    let mut img = Rgba8::new(w, h);
    let (wu, hu) = (w as usize, h as usize);
    for y in 0..hu {
        let g = (y * 255 / hu.max(2).saturating_sub(1)) as u8;
        let row = &mut img.data[y * wu * 4..(y + 1) * wu * 4];
        for (x, px) in row.chunks_exact_mut(4).enumerate() {
            let r = (x * 255 / wu.max(2).saturating_sub(1)) as u8;
            let b = 255 - ((r as u16 + g as u16) / 2) as u8;
            px.copy_from_slice(&[r, g, b, 255]);
        }
    }
    img
}

fn fill_rect(out: &mut Rgba8, x0: usize, y0: usize, w: usize, h: usize, c: [u8; 4]) {
    let (ow, oh) = (out.width as usize, out.height as usize);
    for y in y0.min(oh)..(y0 + h).min(oh) {
        let row = &mut out.data[y * ow * 4..(y + 1) * ow * 4];
        for px in row[x0.min(ow) * 4..(x0 + w).min(ow) * 4].chunks_exact_mut(4) {
            px.copy_from_slice(&c);
        }
    }
}

/// A moving test pattern over [`pattern_background`]: a white box crossing
/// the frame, a grey bar sweeping down, and the frame number as a 16-bit
/// code of black and white blocks along the bottom, so that motion, frame
/// order and dropped or repeated frames are visible in every deliverable.
pub fn pattern(n: u64, background: &Rgba8, out: &mut Rgba8) {
    out.data.copy_from_slice(&background.data);
    let (w, h) = (out.width as usize, out.height as usize);
    let t = n as usize;
    let side = (h / 6).max(2);
    let bx = (t * w / 100) % (w + side);
    fill_rect(
        out,
        bx.saturating_sub(side),
        h / 2 - side / 2,
        bx.min(side),
        side,
        [235, 235, 235, 255],
    );
    let bar = (h / 40).max(1);
    fill_rect(out, 0, (t * h / 75) % h, w, bar, [128, 128, 128, 255]);
    let cell = (w / 40).max(1);
    let y0 = h - 2 * cell;
    for bit in 0..16 {
        let on = (n >> (15 - bit)) & 1 == 1;
        let c = if on {
            [255, 255, 255, 255]
        } else {
            [0, 0, 0, 255]
        };
        fill_rect(out, cell + bit * cell, y0, cell, cell, c);
    }
}
