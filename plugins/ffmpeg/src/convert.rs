//! Turning decoded FFmpeg frames into what the ABI carries: planar video in
//! one of [`abi::pix`] (converted with swscale only when needed), and packed
//! `f32` audio (through swresample, which also remixes and resamples).

use crate::ffi_util::{
    av_code, pix_enum, pix_from_av, pix_is_jpeg_range, pix_is_rgb, pix_to_av, rescale, Layout,
};
use deliver_plugin_api::abi::{self, pix};
use deliver_plugin_api::plugin::{AudioView, VideoView};
use ffmpeg_next::ffi;
use ffmpeg_next::frame;
use std::ffi::c_int;
use std::ptr;

/// The colour tags a frame carries, as H.273 integers.
pub(crate) fn frame_color(f: &ffi::AVFrame) -> abi::ColorTags {
    abi::ColorTags {
        primaries: f.color_primaries as u32,
        transfer: f.color_trc as u32,
        matrix: f.colorspace as u32,
        range: f.color_range as u32,
    }
}

/// Rows in plane `i` of a `height`-row image in `layout`.
pub(crate) fn plane_rows(layout: pix::Layout, i: usize, height: u32) -> usize {
    if i == 1 || i == 2 {
        ((height + (1 << layout.chroma_shift_y) - 1) >> layout.chroma_shift_y) as usize
    } else {
        height as usize
    }
}

/// Bytes of pixel data in one row of plane `i` (without stride padding).
pub(crate) fn plane_row_bytes(layout: pix::Layout, i: usize, width: u32) -> usize {
    let w = if i == 1 || i == 2 {
        (width + (1 << layout.chroma_shift_x) - 1) >> layout.chroma_shift_x
    } else {
        width
    };
    w as usize * layout.bytes_per_sample
}

/// Borrows an AVFrame's planes as an ABI view of format `fmt`.
///
/// # Safety
/// `f` must hold an image of format `fmt` with positive line sizes, and stay
/// untouched while the view is borrowed.
unsafe fn frame_view(f: &ffi::AVFrame, fmt: u32) -> [(&[u8], usize); 4] {
    let mut planes: [(&[u8], usize); 4] = [(&[], 0); 4];
    let Some(layout) = pix::layout(fmt) else {
        return planes;
    };
    for (i, plane) in planes.iter_mut().enumerate().take(layout.planes) {
        let stride = f.linesize[i] as usize;
        let rows = plane_rows(layout, i, f.height as u32);
        let row = plane_row_bytes(layout, i, f.width as u32);
        if !f.data[i].is_null() && rows > 0 {
            // Only up to the end of the last row: a cropped frame's planes
            // start inside its buffer, so whole strides could run past it.
            // SAFETY: every row of the image lies in the frame's buffer.
            *plane = (
                unsafe { std::slice::from_raw_parts(f.data[i], stride * (rows - 1) + row) },
                stride,
            );
        }
    }
    planes
}

/// An swscale context, kept while the conversion it was made for repeats.
struct Scaler {
    ctx: *mut ffi::SwsContext,
    key: ScaleKey,
}

// SAFETY: an SwsContext is used by one thread at a time (behind `&mut`).
unsafe impl Send for Scaler {}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ScaleKey {
    width: c_int,
    height: c_int,
    src: c_int,
    dst: ffi::AVPixelFormat,
    src_full: bool,
    dst_full: bool,
    matrix: c_int,
}

impl Scaler {
    fn new(key: ScaleKey) -> Result<Scaler, String> {
        let src = pix_enum(key.src).ok_or("decoder produced an unknown pixel format")?;
        // Accurate rounding and full chroma interpolation: these frames feed
        // quality measurements, so speed loses to fidelity.
        let flags = ffi::SWS_BICUBIC | ffi::SWS_ACCURATE_RND | ffi::SWS_FULL_CHR_H_INT;
        // SAFETY: valid sizes and formats; null filters are allowed.
        let ctx = unsafe {
            ffi::sws_getContext(
                key.width,
                key.height,
                src,
                key.width,
                key.height,
                key.dst,
                flags,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            )
        };
        if ctx.is_null() {
            return Err(format!(
                "swscale cannot convert {} to {} at {}x{}",
                crate::ffi_util::pix_name(key.src),
                crate::ffi_util::pix_name(key.dst as c_int),
                key.width,
                key.height
            ));
        }
        // SAFETY: valid context; coefficient tables are static.
        unsafe {
            let coeffs = ffi::sws_getCoefficients(key.matrix);
            ffi::sws_setColorspaceDetails(
                ctx,
                coeffs,
                key.src_full as c_int,
                coeffs,
                key.dst_full as c_int,
                0,
                1 << 16,
                1 << 16,
            );
        }
        Ok(Scaler { ctx, key })
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        // SAFETY: made by sws_getContext, freed once.
        unsafe { ffi::sws_freeContext(self.ctx) };
    }
}

/// Video output of a decoder: the decoded frame itself when it is already in
/// the wanted format, else a converted copy in one reused frame.
pub(crate) struct VideoOut {
    want: u32,
    scaler: Option<Scaler>,
    out: frame::Video,
    converted: bool,
    pix_fmt: u32,
    color: abi::ColorTags,
    pts: i64,
    time_base: abi::Rational,
    key: bool,
}

impl VideoOut {
    /// `want` is [`pix::NONE`] for "native if the ABI has it, else yuv420p".
    pub(crate) fn new(want: u32) -> Result<VideoOut, String> {
        if want != pix::NONE && pix_to_av(want).is_none() {
            return Err(format!(
                "video_pix_fmt {want} is not a pixel format of the ABI; accepted: {}",
                pix::ALL
                    .iter()
                    .map(|(v, n)| format!("{v} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(VideoOut {
            want,
            scaler: None,
            out: frame::Video::empty(),
            converted: false,
            pix_fmt: pix::NONE,
            color: abi::ColorTags::UNSPECIFIED,
            pts: 0,
            time_base: abi::Rational::new(0, 1),
            key: false,
        })
    }

    /// Prepares the output for `src`, a frame just decoded in time base `tb`.
    pub(crate) fn process(&mut self, src: &frame::Video, tb: abi::Rational) -> Result<(), String> {
        // SAFETY: a decoded frame.
        let f = unsafe { &*src.as_ptr() };
        let native = pix_from_av(f.format);
        let target = match (self.want, native) {
            (pix::NONE, pix::NONE) => pix::YUV420P,
            (pix::NONE, n) => n,
            (w, _) => w,
        };
        self.pts = if f.best_effort_timestamp != ffi::AV_NOPTS_VALUE {
            f.best_effort_timestamp
        } else {
            f.pts
        };
        self.time_base = tb;
        self.key = f.key_frame != 0;
        self.color = frame_color(f);
        self.pix_fmt = target;

        let planes = pix::layout(native).map_or(0, |l| l.planes);
        let strides_ok = (0..planes).all(|i| f.linesize[i] > 0);
        if target == native && strides_ok {
            self.converted = false;
            return Ok(());
        }
        self.convert(f, target)
    }

    fn convert(&mut self, f: &ffi::AVFrame, target: u32) -> Result<(), String> {
        let src = pix_enum(f.format).ok_or_else(|| {
            format!(
                "decoder produced pixel format {} that FFmpeg does not name",
                f.format
            )
        })?;
        let dst = pix_to_av(target).ok_or("target pixel format is not an ABI format")?;
        let (src_rgb, dst_rgb) = (pix_is_rgb(src), pix_is_rgb(dst));
        let src_full = src_rgb
            || pix_is_jpeg_range(src)
            || f.color_range == ffi::AVColorRange::AVCOL_RANGE_JPEG;
        // RGB is always full range. YUV made from RGB gets the broadcast
        // (limited) range; YUV made from YUV keeps its range, so no levels
        // are squeezed that the tags could not describe.
        let dst_full = if dst_rgb {
            true
        } else if src_rgb {
            false
        } else {
            src_full
        };
        let spc = f.colorspace as c_int;
        // Unspecified matrices follow the usual SD/HD convention.
        let matrix = match spc {
            1 | 4..=10 => spc,
            _ if f.height > 576 => 1,
            _ => 5,
        };
        let key = ScaleKey {
            width: f.width,
            height: f.height,
            src: f.format,
            dst,
            src_full,
            dst_full,
            matrix,
        };
        if self.scaler.as_ref().map(|s| s.key) != Some(key) {
            self.scaler = Some(Scaler::new(key)?);
        }
        // SAFETY: reading the reused frame's header.
        let (ow, oh, ofmt, empty) = unsafe {
            let o = &*self.out.as_ptr();
            (o.width, o.height, o.format, o.data[0].is_null())
        };
        if empty || ow != f.width || oh != f.height || ofmt != dst as c_int {
            self.out = frame::Video::new(dst.into(), f.width as u32, f.height as u32);
            // SAFETY: reading the new frame's buffer.
            if unsafe { (*self.out.as_ptr()).data[0].is_null() } {
                return Err(format!(
                    "out of memory for a {}x{} conversion frame",
                    f.width, f.height
                ));
            }
        }
        let scaler = self.scaler.as_ref().expect("made above");
        // SAFETY: both frames hold images of the sizes and formats the
        // scaler was made for.
        let rows = unsafe {
            let o = self.out.as_mut_ptr();
            ffi::sws_scale(
                scaler.ctx,
                f.data.as_ptr() as *const *const u8,
                f.linesize.as_ptr(),
                0,
                f.height,
                (*o).data.as_ptr(),
                (*o).linesize.as_ptr(),
            )
        };
        if rows < 0 {
            return Err(format!("swscale failed: {}", av_code(rows)));
        }
        if dst_rgb {
            self.color.matrix = 0;
            self.color.range = 2;
        } else if src_rgb {
            self.color.matrix = matrix as u32;
            self.color.range = 1;
        } else if dst_full && self.color.range == 0 {
            self.color.range = 2;
        }
        self.converted = true;
        Ok(())
    }

    /// The timestamp of the frame last prepared.
    pub(crate) fn pts(&self) -> i64 {
        self.pts
    }

    /// The frame prepared by [`process`](Self::process); `src` is the frame
    /// that was passed to it.
    pub(crate) fn view<'a>(&'a self, src: &'a frame::Video) -> VideoView<'a> {
        let f: &ffi::AVFrame = if self.converted {
            // SAFETY: the converted frame, alive as long as `self`.
            unsafe { &*self.out.as_ptr() }
        } else {
            // SAFETY: the decoded frame, alive as long as `src`.
            unsafe { &*src.as_ptr() }
        };
        let n_planes = pix::layout(self.pix_fmt).map_or(0, |l| l.planes);
        VideoView {
            width: f.width as u32,
            height: f.height as u32,
            pix_fmt: self.pix_fmt,
            // SAFETY: `f` holds `pix_fmt` with positive strides (checked or
            // made by `process`) and is borrowed for `'a`.
            planes: unsafe { frame_view(f, self.pix_fmt) },
            n_planes,
            pts: self.pts,
            time_base: self.time_base,
            color: self.color,
            key: self.key,
        }
    }
}

/// An FFmpeg sample format from the integer libav* stored in a frame.
pub(crate) fn sample_enum(f: c_int) -> Option<ffi::AVSampleFormat> {
    if f < 0 || f >= ffi::AVSampleFormat::AV_SAMPLE_FMT_NB as c_int {
        return None;
    }
    // SAFETY: AVSampleFormat's values run without gaps from NONE to NB.
    Some(unsafe { std::mem::transmute::<c_int, ffi::AVSampleFormat>(f) })
}

/// An swresample context between two fixed formats.
pub(crate) struct Resampler {
    ctx: *mut ffi::SwrContext,
    in_fmt: ffi::AVSampleFormat,
    in_rate: c_int,
    in_layout: Layout,
    out_fmt: ffi::AVSampleFormat,
    out_layout: Layout,
}

// SAFETY: an SwrContext is used by one thread at a time (behind `&mut`).
unsafe impl Send for Resampler {}

impl Resampler {
    pub(crate) fn new(
        in_fmt: ffi::AVSampleFormat,
        in_rate: c_int,
        in_layout: Layout,
        out_fmt: ffi::AVSampleFormat,
        out_rate: c_int,
        out_layout: Layout,
    ) -> Result<Resampler, String> {
        let mut ctx: *mut ffi::SwrContext = ptr::null_mut();
        // SAFETY: valid layouts (swresample copies them) and out-pointer.
        let r = unsafe {
            ffi::swr_alloc_set_opts2(
                &mut ctx,
                &out_layout.0 as *const _ as *mut _,
                out_fmt,
                out_rate,
                &in_layout.0 as *const _ as *mut _,
                in_fmt,
                in_rate,
                0,
                ptr::null_mut(),
            )
        };
        let describe = || {
            format!(
                "{} Hz {} to {} Hz {}",
                in_rate,
                in_layout.describe(),
                out_rate,
                out_layout.describe()
            )
        };
        if r < 0 || ctx.is_null() {
            return Err(format!(
                "swresample cannot convert {}: {}",
                describe(),
                av_code(r)
            ));
        }
        // SAFETY: allocated above.
        let r = unsafe { ffi::swr_init(ctx) };
        if r < 0 {
            let msg = format!("swresample cannot convert {}: {}", describe(), av_code(r));
            // SAFETY: allocated above, freed once.
            unsafe { ffi::swr_free(&mut ctx) };
            return Err(msg);
        }
        Ok(Resampler {
            ctx,
            in_fmt,
            in_rate,
            in_layout,
            out_fmt,
            out_layout,
        })
    }

    fn matches(&self, fmt: c_int, rate: c_int, layout: &ffi::AVChannelLayout) -> bool {
        self.in_fmt as c_int == fmt && self.in_rate == rate && self.in_layout.same_as(layout)
    }

    /// The most samples the next conversion of `in_samples` may produce.
    pub(crate) fn out_capacity(&self, in_samples: usize) -> usize {
        // SAFETY: valid context.
        let n = unsafe { ffi::swr_get_out_samples(self.ctx, in_samples as c_int) };
        n.max(0) as usize
    }

    /// Converts `count` input samples (or flushes, with no input planes)
    /// into `out` planes with room for `cap` samples each.
    ///
    /// # Safety
    /// `input` must point at `count` samples per plane in the input format
    /// and `out` at `cap` samples per plane in the output format.
    pub(crate) unsafe fn run(
        &mut self,
        out: &[*mut u8],
        cap: usize,
        input: Option<&[*const u8]>,
        count: usize,
    ) -> Result<usize, String> {
        let (in_ptr, n) = match input {
            Some(p) => (p.as_ptr() as *mut *const u8, count as c_int),
            None => (ptr::null_mut(), 0),
        };
        // SAFETY: guaranteed by the caller.
        let r = unsafe {
            ffi::swr_convert(
                self.ctx,
                out.as_ptr() as *mut *mut u8,
                cap as c_int,
                in_ptr,
                n,
            )
        };
        if r < 0 {
            return Err(format!("swresample failed: {}", av_code(r)));
        }
        Ok(r as usize)
    }

    pub(crate) fn out_channels(&self) -> u32 {
        self.out_layout.channels()
    }

    pub(crate) fn out_format(&self) -> ffi::AVSampleFormat {
        self.out_fmt
    }
}

impl Drop for Resampler {
    fn drop(&mut self) {
        // SAFETY: made by swr_alloc_set_opts2, freed once.
        unsafe { ffi::swr_free(&mut self.ctx) };
    }
}

/// Audio output of a decoder: interleaved `f32` at the wanted rate and
/// channel count, with timestamps counted in output samples.
pub(crate) struct AudioOut {
    want_rate: u32,
    want_channels: u32,
    swr: Option<Resampler>,
    out_rate: u32,
    buf: Vec<f32>,
    pts: i64,
    next_pts: Option<i64>,
    /// Input samples still to drop (encoder priming).
    skip: usize,
}

impl AudioOut {
    pub(crate) fn new(want_rate: u32, want_channels: u32, skip: usize) -> AudioOut {
        AudioOut {
            want_rate,
            want_channels,
            swr: None,
            out_rate: want_rate,
            buf: Vec::new(),
            pts: 0,
            next_pts: None,
            skip,
        }
    }

    /// Forgets timing and resampler state (after a seek).
    pub(crate) fn reset(&mut self) {
        self.swr = None;
        self.buf.clear();
        self.next_pts = None;
    }

    fn out_channels(&self) -> u32 {
        self.swr.as_ref().map_or(0, Resampler::out_channels)
    }

    /// Appends what the current resampler converts from `input` (or its tail,
    /// for `None`) to the buffer; returns the samples added.
    fn append(&mut self, input: Option<&[*const u8]>, count: usize) -> Result<usize, String> {
        let Some(swr) = self.swr.as_mut() else {
            return Ok(0);
        };
        let ch = swr.out_channels() as usize;
        let cap = swr.out_capacity(count);
        if cap == 0 {
            return Ok(0);
        }
        let start = self.buf.len();
        self.buf.resize(start + cap * ch, 0.0);
        let out = [self.buf[start..].as_mut_ptr() as *mut u8];
        // SAFETY: `out` has room for `cap` packed samples; the caller vouches
        // for `input`.
        let n = unsafe { swr.run(&out, cap, input, count) }?;
        self.buf.truncate(start + n * ch);
        Ok(n)
    }

    /// Converts a decoded frame whose timestamps are in `tb`; returns the
    /// number of samples now ready in [`view`](Self::view).
    pub(crate) fn push(
        &mut self,
        src: &frame::Audio,
        tb: ffi::AVRational,
    ) -> Result<usize, String> {
        // SAFETY: a decoded frame.
        let f = unsafe { &*src.as_ptr() };
        self.buf.clear();
        let total = f.nb_samples.max(0) as usize;
        let dropped = self.skip.min(total);
        self.skip -= dropped;
        if dropped == total {
            return Ok(0);
        }
        let fmt = sample_enum(f.format).ok_or_else(|| {
            format!(
                "decoder produced sample format {} unknown to FFmpeg",
                f.format
            )
        })?;

        let stale = self
            .swr
            .as_ref()
            .is_some_and(|s| !s.matches(f.format, f.sample_rate, &f.ch_layout));
        let mut produced = 0;
        if stale {
            // The stream changed format mid-way: finish the old conversion
            // before starting the new one, so no samples are lost.
            produced += self.append(None, 0)?;
            self.swr = None;
        }
        if self.swr.is_none() {
            let in_layout = if f.ch_layout.nb_channels > 0 {
                Layout::copy_of(&f.ch_layout)
            } else {
                Layout::default_for(f.channels.max(1) as u32)
            };
            let out_layout = match self.want_channels {
                0 => Layout::copy_of(&in_layout.0),
                n => Layout::default_for(n),
            };
            self.out_rate = if self.want_rate == 0 {
                f.sample_rate as u32
            } else {
                self.want_rate
            };
            self.swr = Some(Resampler::new(
                fmt,
                f.sample_rate,
                in_layout,
                ffi::AVSampleFormat::AV_SAMPLE_FMT_FLT,
                self.out_rate as c_int,
                out_layout,
            )?);
        }
        if self.next_pts.is_none() {
            let ts = if f.best_effort_timestamp != ffi::AV_NOPTS_VALUE {
                f.best_effort_timestamp
            } else {
                f.pts
            };
            let out_tb = ffi::AVRational {
                num: 1,
                den: self.out_rate as c_int,
            };
            let in_tb = ffi::AVRational {
                num: 1,
                den: f.sample_rate.max(1),
            };
            let start = if ts == ffi::AV_NOPTS_VALUE {
                0
            } else {
                rescale(ts, tb, out_tb)
            };
            self.next_pts = Some(start + rescale(dropped as i64, in_tb, out_tb));
        }

        // SAFETY: reading the frame's sample format facts.
        let (bps, planar) = unsafe {
            (
                ffi::av_get_bytes_per_sample(fmt) as usize,
                ffi::av_sample_fmt_is_planar(fmt) != 0,
            )
        };
        let channels = f.ch_layout.nb_channels.max(f.channels).max(1) as usize;
        let planes = if planar { channels } else { 1 };
        let step = if planar { bps } else { bps * channels };
        let input: Vec<*const u8> = (0..planes)
            // SAFETY: extended_data holds one pointer per plane; skipping
            // `dropped` samples stays inside each plane.
            .map(|i| unsafe { (*f.extended_data.add(i)).add(dropped * step) as *const u8 })
            .collect();
        produced += self.append(Some(&input), total - dropped)?;
        self.finish_chunk(produced);
        Ok(produced)
    }

    /// Drains the resampler at the end of the stream.
    pub(crate) fn flush(&mut self) -> Result<usize, String> {
        self.buf.clear();
        let n = self.append(None, 0)?;
        self.finish_chunk(n);
        Ok(n)
    }

    fn finish_chunk(&mut self, n: usize) {
        let next = self.next_pts.unwrap_or(0);
        self.pts = next;
        self.next_pts = Some(next + n as i64);
    }

    pub(crate) fn view(&self) -> AudioView<'_> {
        AudioView {
            sample_rate: self.out_rate,
            channels: self.out_channels(),
            samples: &self.buf,
            pts: self.pts,
        }
    }
}
