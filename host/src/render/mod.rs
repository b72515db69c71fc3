//! The render stage: composites the video tracks of a manifest into canvas
//! frames and mixes its audio tracks, once per job. Every deliverable is fed
//! from this one render.
//!
//! This is the CPU path: straight-alpha 8-bit RGBA "over" compositing with
//! opacity, position/scale and cross-dissolves. Work that cannot change the
//! picture is skipped: layers below an opaque full-canvas layer are not drawn,
//! and static generators (bars, solids) are drawn once and copied.

pub mod audio;
pub mod colour;
pub mod convert;
pub mod cpu;
pub mod gpu;
pub mod image;
pub mod lut;
pub mod plan;
pub mod timeline;

use crate::manifest::model::{ImageSequence, Manifest, VideoClip, VideoSource};
use crate::plugins::Registry;
use deliver_plugin_api::abi::{self, cap, media, pix};
use deliver_plugin_api::host::{FileDecoder, Frame};
pub use image::{Rgba8, Yuv};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

/// Reads a media file's video sequentially, holding the frame shown at a
/// given source time.
struct MediaReader {
    path: PathBuf,
    dec: FileDecoder,
    /// Frame shown now and its time in seconds.
    cur: Rgba8,
    cur_t: f64,
    /// A frame read ahead of the requested time.
    next: Option<(Rgba8, f64)>,
    eof: bool,
}

impl MediaReader {
    fn open(reg: &Registry, path: &Path, in_point: f64) -> Result<(Self, abi::MediaInfo), String> {
        let choice = reg
            .find(cap::FILE_DECODE, "*", None)
            .ok_or("no file decoder loaded")?;
        let cfg = abi::DecoderConfig {
            struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
            want: media::VIDEO,
            video_pix_fmt: pix::RGBA,
            audio_sample_rate: 0,
            audio_channels: 0,
            threads: 0,
            reserved: [0; 4],
        };
        let (mut dec, info) = choice
            .plugin
            .open_file(&path.to_string_lossy(), &cfg)
            .map_err(|e| e.to_string())?;
        if info.has_video == 0 {
            return Err("no video stream".into());
        }
        if in_point > 0.0 {
            dec.seek((in_point * 1e6) as i64)
                .map_err(|e| e.to_string())?;
        }
        Ok((
            MediaReader {
                path: path.to_owned(),
                dec,
                cur: Rgba8::new(info.width, info.height),
                cur_t: f64::NEG_INFINITY,
                next: None,
                eof: false,
            },
            info,
        ))
    }

    fn read(&mut self) -> Result<Option<(Rgba8, f64)>, RenderError> {
        loop {
            let f = self.dec.next_frame().map_err(|e| RenderError::Decode {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            match f {
                None => return Ok(None),
                Some(Frame::Video(v)) => {
                    let t = v.pts as f64 * v.time_base.as_f64();
                    let mut img = Rgba8::new(v.width, v.height);
                    img.copy_from_view(&v);
                    return Ok(Some((img, t)));
                }
                Some(Frame::Audio { .. }) => continue,
            }
        }
    }

    /// The frame that is on screen at source time `t`: the last one whose
    /// timestamp is at or before `t` (half a microsecond of slack for
    /// rounding in container time bases).
    fn frame_at(&mut self, t: f64) -> Result<&Rgba8, RenderError> {
        const EPS: f64 = 5e-7;
        loop {
            if self.next.is_none() && !self.eof {
                self.next = self.read()?;
                self.eof = self.next.is_none();
            }
            match &self.next {
                Some((_, nt)) if *nt <= t + EPS || self.cur_t == f64::NEG_INFINITY => {
                    let (img, nt) = self.next.take().expect("checked");
                    self.cur = img;
                    self.cur_t = nt;
                }
                _ => break,
            }
        }
        Ok(&self.cur)
    }
}

/// Which generator image a clip draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StaticKey {
    Bars,
    PatternBackground,
    Solid([u8; 4]),
}

/// One layer to draw at a frame.
struct Layer<'a> {
    clip: &'a VideoClip,
    key: (usize, usize),
    opacity: f32,
    position: [f32; 2],
    scale: f32,
}

/// Renders the canvas frames of one manifest.
pub struct Compositor<'a> {
    manifest: &'a Manifest,
    registry: &'a Registry,
    readers: HashMap<(usize, usize), MediaReader>,
    /// The image on screen of each image-sequence clip, by its number.
    images: HashMap<(usize, usize), (u64, Rgba8)>,
    statics: HashMap<StaticKey, Rgba8>,
    scratch: Rgba8,
}

impl<'a> Compositor<'a> {
    pub fn new(manifest: &'a Manifest, registry: &'a Registry) -> Self {
        let (w, h) = (manifest.canvas.width, manifest.canvas.height);
        Compositor {
            manifest,
            registry,
            readers: HashMap::new(),
            images: HashMap::new(),
            statics: HashMap::new(),
            scratch: Rgba8::new(w, h),
        }
    }

    /// Opens every media file once up front, so that a missing codec or a
    /// corrupt file fails the job before any encoding starts.
    ///
    /// # Errors
    /// The first media file that cannot be opened.
    pub fn preflight(&self) -> Result<(), RenderError> {
        for track in &self.manifest.video {
            for (ci, clip) in track.clips.iter().enumerate() {
                let first_image;
                let media = match &clip.source {
                    VideoSource::Media { path } => Some((path, clip.in_point)),
                    VideoSource::ImageSequence(seq) => {
                        first_image = seq.path(seq.number_at(clip.in_point));
                        Some((&first_image, 0.0))
                    }
                    _ => None,
                };
                if let Some((path, in_point)) = media {
                    if self.registry.find(cap::FILE_DECODE, "*", None).is_none() {
                        return Err(RenderError::NoDecoder {
                            available: self.registry.available(cap::FILE_DECODE).join(", "),
                        });
                    }
                    MediaReader::open(self.registry, path, in_point).map_err(|reason| {
                        RenderError::Open {
                            path: path.clone(),
                            track: track.name.clone(),
                            clip: ci,
                            reason,
                        }
                    })?;
                }
            }
        }
        Ok(())
    }

    fn layers_at(&self, n: u64) -> Vec<Layer<'a>> {
        let m: &'a Manifest = self.manifest;
        let mut out = Vec::new();
        for (ti, track) in m.video.iter().enumerate() {
            for (ci, clip) in track.clips.iter().enumerate() {
                if n < clip.start || n >= clip.start + clip.frames {
                    continue;
                }
                let f = (n - clip.start) as f64;
                let mut opacity = clip.opacity.at(f);
                if let Some(d) = &clip.transition_in {
                    let into = n - clip.start;
                    if into < d.frames {
                        // Frame-centred ramp: neither end of the dissolve shows
                        // a pure frame of one side.
                        opacity *= (into as f32 + 0.5) / d.frames as f32;
                    }
                }
                out.push(Layer {
                    clip,
                    key: (ti, ci),
                    opacity,
                    position: [clip.position[0].at(f), clip.position[1].at(f)],
                    scale: clip.scale.at(f),
                });
            }
        }
        out
    }

    /// Whether a layer hides everything below it.
    fn covers_canvas(l: &Layer<'_>) -> bool {
        if l.opacity < 1.0 || l.position != [0.0, 0.0] || l.scale != 1.0 {
            return false;
        }
        match &l.clip.source {
            VideoSource::Bars | VideoSource::Pattern => true,
            VideoSource::Solid { color } => color.0[3] == 255,
            // A media frame may carry alpha or be smaller than the canvas.
            VideoSource::Media { .. }
            | VideoSource::ImageSequence(_)
            | VideoSource::Still { .. }
            | VideoSource::Title(_) => false,
        }
    }

    /// Renders timeline frame `n` into `out` (canvas size, alpha 255 where
    /// the background is opaque).
    ///
    /// # Errors
    /// A media decode failure.
    pub fn render(&mut self, n: u64, out: &mut Rgba8) -> Result<(), RenderError> {
        let layers = self.layers_at(n);
        // Start at the topmost layer that hides everything below it.
        let first = layers
            .iter()
            .rposition(Self::covers_canvas)
            .unwrap_or(usize::MAX);
        if first == usize::MAX {
            out.fill(self.manifest.canvas.background.0);
        }
        let start = if first == usize::MAX { 0 } else { first };
        // Close readers of clips that have ended.
        let live: Vec<(usize, usize)> = layers.iter().map(|l| l.key).collect();
        self.readers.retain(|k, _| live.contains(k));
        self.images.retain(|k, _| live.contains(k));
        for (i, l) in layers.iter().enumerate().skip(start) {
            let opaque_base = i == first;
            self.draw(n, l, out, opaque_base)?;
        }
        Ok(())
    }

    fn draw(
        &mut self,
        n: u64,
        l: &Layer<'a>,
        out: &mut Rgba8,
        replace: bool,
    ) -> Result<(), RenderError> {
        let c = &self.manifest.canvas;
        let (w, h) = (c.width, c.height);
        let clip = l.clip;
        let src: &Rgba8 = match &clip.source {
            VideoSource::Bars => self
                .statics
                .entry(StaticKey::Bars)
                .or_insert_with(|| bars(w, h)),
            VideoSource::Solid { color } => {
                if replace {
                    out.fill(color.0);
                    return Ok(());
                }
                self.statics
                    .entry(StaticKey::Solid(color.0))
                    .or_insert_with(|| {
                        let mut img = Rgba8::new(w, h);
                        img.fill(color.0);
                        img
                    })
            }
            VideoSource::Pattern => {
                let bg = self
                    .statics
                    .entry(StaticKey::PatternBackground)
                    .or_insert_with(|| pattern_background(w, h));
                if replace {
                    pattern(n, bg, out);
                    return Ok(());
                }
                pattern(n, bg, &mut self.scratch);
                &self.scratch
            }
            VideoSource::Still { .. } | VideoSource::Title(_) => {
                return Err(RenderError::Unsupported {
                    track: self.manifest.video[l.key.0].name.clone(),
                    clip: l.key.1,
                    what: "stills and titles",
                })
            }
            VideoSource::ImageSequence(seq) => {
                let t =
                    clip.in_point + (n - clip.start) as f64 / c.frame_rate.as_f64() * clip.speed;
                let number = seq.number_at(t);
                let cached = self.images.get(&l.key).is_some_and(|(k, _)| *k == number);
                if !cached {
                    let img = read_image(self.registry, seq, number).map_err(|reason| {
                        RenderError::Open {
                            path: seq.path(number),
                            track: self.manifest.video[l.key.0].name.clone(),
                            clip: l.key.1,
                            reason,
                        }
                    })?;
                    self.images.insert(l.key, (number, img));
                }
                &self.images.get(&l.key).expect("inserted").1
            }
            VideoSource::Media { path } => {
                let t =
                    clip.in_point + (n - clip.start) as f64 / c.frame_rate.as_f64() * clip.speed;
                if !self.readers.contains_key(&l.key) {
                    let track = &self.manifest.video[l.key.0];
                    let (r, _) = MediaReader::open(self.registry, path, clip.in_point).map_err(
                        |reason| RenderError::Open {
                            path: path.clone(),
                            track: track.name.clone(),
                            clip: l.key.1,
                            reason,
                        },
                    )?;
                    self.readers.insert(l.key, r);
                }
                self.readers
                    .get_mut(&l.key)
                    .expect("inserted")
                    .frame_at(t)?
            }
        };
        if replace
            && l.position == [0.0, 0.0]
            && l.scale == 1.0
            && src.width == w
            && src.height == h
        {
            out.data.copy_from_slice(&src.data);
        } else {
            composite(src, out, l.position, l.scale, l.opacity);
        }
        Ok(())
    }
}

/// The picture size of a media file, as the file decoder reads it: the
/// [`crate::manifest::MediaProbe`] of timelines that name no canvas size.
pub fn probe_size(reg: &Registry, path: &Path) -> Option<(u32, u32)> {
    let (_, info) = MediaReader::open(reg, path, 0.0).ok()?;
    (info.width > 0 && info.height > 0).then_some((info.width, info.height))
}

/// Image `number` of a sequence, decoded through the same file decoder as
/// media files (one image file is a one-frame medium).
fn read_image(reg: &Registry, seq: &ImageSequence, number: u64) -> Result<Rgba8, String> {
    let path = seq.path(number);
    let (mut r, _) = MediaReader::open(reg, &path, 0.0)?;
    match r.read() {
        Ok(Some((img, _))) => Ok(img),
        Ok(None) => Err("the image file holds no picture".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Draws `src` over `dst`, scaled by `scale` with its top-left at `pos`
/// (bilinear sampling when scaled or at a sub-pixel position).
pub fn composite(src: &Rgba8, dst: &mut Rgba8, pos: [f32; 2], scale: f32, opacity: f32) {
    let (dw, dh) = (dst.width as i64, dst.height as i64);
    let (sw, sh) = (src.width as f32 * scale, src.height as f32 * scale);
    let x0 = pos[0].floor().max(0.0) as i64;
    let y0 = pos[1].floor().max(0.0) as i64;
    let x1 = ((pos[0] + sw).ceil() as i64).min(dw);
    let y1 = ((pos[1] + sh).ceil() as i64).min(dh);
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let op = (opacity.clamp(0.0, 1.0) * 256.0).round() as u32;
    let integer = scale == 1.0 && pos[0].fract() == 0.0 && pos[1].fract() == 0.0;
    let sws = src.width as usize * 4;
    for y in y0..y1 {
        let drow = &mut dst.data[(y * dw * 4) as usize..((y + 1) * dw * 4) as usize];
        for x in x0..x1 {
            let s: [u32; 4] = if integer {
                let sx = (x - pos[0] as i64) as usize;
                let sy = (y - pos[1] as i64) as usize;
                if sx >= src.width as usize || sy >= src.height as usize {
                    continue;
                }
                let p = &src.data[sy * sws + sx * 4..sy * sws + sx * 4 + 4];
                [p[0] as u32, p[1] as u32, p[2] as u32, p[3] as u32]
            } else {
                let fx = (x as f32 + 0.5 - pos[0]) / scale - 0.5;
                let fy = (y as f32 + 0.5 - pos[1]) / scale - 0.5;
                if fx < -0.5
                    || fy < -0.5
                    || fx > src.width as f32 - 0.5
                    || fy > src.height as f32 - 0.5
                {
                    continue;
                }
                sample_bilinear(src, fx, fy)
            };
            let a = (s[3] * op + 128) / 256; // 0..=255, rounded
            let d = &mut drow[(x * 4) as usize..(x * 4 + 4) as usize];
            if a >= 255 {
                d[0] = s[0] as u8;
                d[1] = s[1] as u8;
                d[2] = s[2] as u8;
                d[3] = 255;
            } else if a > 0 {
                over(d, [s[0], s[1], s[2]], a);
            }
        }
    }
}

/// Porter–Duff "over" of a straight-alpha colour `s` at alpha `a`
/// (1..=254) onto the straight-alpha pixel `d`. Over an opaque pixel this is
/// the plain mix; over a transparent or translucent one the colours are
/// weighted by their alphas, so a layer over nothing keeps its own colour
/// (not darkened towards the empty pixel's black) and the result's alpha
/// is `a + a_d·(1 − a)`.
fn over(d: &mut [u8], s: [u32; 3], a: u32) {
    let ia = 255 - a;
    let ad = d[3] as u32;
    if ad == 255 {
        for c in 0..3 {
            d[c] = ((s[c] * a + d[c] as u32 * ia + 127) / 255) as u8;
        }
        return;
    }
    // In units of 1/255²: a·255 for the source, a_d·(255 − a) below it.
    let ws = a * 255;
    let wd = ad * ia;
    let out = ws + wd;
    for c in 0..3 {
        d[c] = ((s[c] * ws + d[c] as u32 * wd + out / 2) / out) as u8;
    }
    d[3] = ((out + 127) / 255) as u8;
}

fn sample_bilinear(src: &Rgba8, fx: f32, fy: f32) -> [u32; 4] {
    let fx = fx.max(0.0);
    let fy = fy.max(0.0);
    let x0 = (fx as usize).min(src.width as usize - 1);
    let y0 = (fy as usize).min(src.height as usize - 1);
    let x1 = (x0 + 1).min(src.width as usize - 1);
    let y1 = (y0 + 1).min(src.height as usize - 1);
    let wx = ((fx - x0 as f32) * 256.0) as u32;
    let wy = ((fy - y0 as f32) * 256.0) as u32;
    let w = src.width as usize;
    let px = |x: usize, y: usize, c: usize| src.data[(y * w + x) * 4 + c] as u32;
    let mut out = [0u32; 4];
    for (c, o) in out.iter_mut().enumerate() {
        let a = px(x0, y0, c) * (256 - wx) + px(x1, y0, c) * wx;
        let b = px(x0, y1, c) * (256 - wx) + px(x1, y1, c) * wx;
        *o = (a * (256 - wy) + b * wy + 32768) >> 16;
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_keeps_the_layers_colour_over_nothing_and_mixes_over_opaque() {
        // Over a transparent pixel: the source's own colour, its alpha.
        let mut d = [0u8, 0, 0, 0];
        over(&mut d, [200, 100, 50], 128);
        assert_eq!(d, [200, 100, 50, 128]);
        // Over an opaque pixel: the plain mix, still opaque.
        let mut d = [0u8, 0, 0, 255];
        over(&mut d, [200, 100, 50], 128);
        assert_eq!(d, [100, 50, 25, 255]);
        // Two half-transparent layers: alpha 0.5 + 0.5·0.5 = 0.75, and the
        // colour is weighted 2:1 towards the top layer.
        let mut d = [0u8, 0, 0, 0];
        over(&mut d, [0, 0, 240], 128);
        over(&mut d, [240, 0, 0], 128);
        assert_eq!(d[3], 192);
        assert!(
            (d[0] as i32 - 160).abs() <= 1 && (d[2] as i32 - 80).abs() <= 1,
            "{d:?}"
        );
    }

    #[test]
    fn a_translucent_layer_over_a_transparent_canvas() {
        let mut canvas = Rgba8::new(4, 4);
        canvas.fill([0, 0, 0, 0]);
        let mut layer = Rgba8::new(2, 2);
        layer.fill([255, 128, 0, 255]);
        composite(&layer, &mut canvas, [1.0, 1.0], 1.0, 0.5);
        let px = |x: usize, y: usize| &canvas.data[(y * 4 + x) * 4..(y * 4 + x) * 4 + 4];
        assert_eq!(px(0, 0), [0, 0, 0, 0]);
        assert_eq!(px(1, 1), [255, 128, 0, 128]);
        assert_eq!(px(2, 2), [255, 128, 0, 128]);
        assert_eq!(px(3, 3), [0, 0, 0, 0]);
    }
}
