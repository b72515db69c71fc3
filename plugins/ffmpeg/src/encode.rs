//! Encoding through any encoder listed in [`crate::caps::ENCODERS`]: one
//! code path for every video encoder and one for every audio encoder, with
//! the per-encoder differences kept in the table's option schemas.

use crate::caps::{self, EncoderEntry};
use crate::convert::{plane_row_bytes, plane_rows, Resampler};
use crate::ffi_util::{
    abi_rational, av_code, av_color, av_rational, codec_name, is_positive, pix_to_av, profile_name,
    read_extradata, rescale, Layout,
};
use crate::ffmpeg_log::clear_last_error;
use crate::options::{self, AvSettings};
use deliver_plugin_api::abi::{self, media, pix, status};
use deliver_plugin_api::plugin::{
    self, AudioView, EncoderSettings, OwnedPacket, PResult, StreamInfo, VideoView,
};
use ffmpeg_next::{codec, ffi, Packet};
use std::collections::VecDeque;
use std::ffi::c_int;

/// The AAC bit rate when neither the config nor the options give one: a
/// common broadcast/web delivery rate for stereo.
const DEFAULT_AUDIO_BIT_RATE: i64 = 192_000;

/// Audio frame size for encoders that take any size.
const VARIABLE_FRAME_SIZE: usize = 1024;

/// Work frames kept for reuse beyond the current one.
const MAX_SPARE_FRAMES: usize = 16;

struct VideoIn {
    /// Reused for every frame unless the encoder still holds its buffers.
    work: ffmpeg_next::Frame,
    /// Earlier work frames, taken again once the encoder lets them go: a
    /// frame-threaded or look-ahead encoder holds several pictures, and a
    /// fresh 4–8 MB picture every frame costs page faults and zeroing (a
    /// tenth of DNxHR's encode time at 1080p).
    spares: Vec<ffmpeg_next::Frame>,
    width: u32,
    height: u32,
    pix_fmt: u32,
    av_fmt: ffi::AVPixelFormat,
    layout: pix::Layout,
    time_base: abi::Rational,
    /// Tagged on every frame too: some encoders (prores_ks) write the
    /// frame's tags into the bitstream, not the context's.
    color: crate::ffi_util::AvColor,
    /// Interlaced coding: `Some(top field first)`. Every picture is marked
    /// interlaced with this field order (mpeg2video codes the picture's
    /// `top_field_first`, not the context's field order).
    interlaced: Option<bool>,
}

struct AudioIn {
    /// Interleaved samples waiting to fill a frame.
    fifo: Vec<f32>,
    channels: u32,
    sample_rate: u32,
    frame_size: usize,
    /// The encoder accepts a short last frame, so no silence is added.
    small_last: bool,
    next_pts: Option<i64>,
    /// Packed f32 → the encoder's sample format, same rate and layout.
    swr: Resampler,
    layout: Layout,
}

/// An open encoder.
pub struct Encoder {
    what: String,
    enc: ffmpeg_next::encoder::Encoder,
    time_base: ffi::AVRational,
    /// Packet duration to use where the encoder leaves it 0.
    frame_duration: i64,
    video: Option<VideoIn>,
    audio: Option<AudioIn>,
    /// Frames the encoder could not take yet (it had packets to give first).
    pending: VecDeque<ffmpeg_next::Frame>,
    eof_requested: bool,
    eof_sent: bool,
    /// The encoder said it has given its last packet.
    finished: bool,
    /// A picture or samples were sent.
    fed: bool,
    /// See [`EncoderEntry::drain_before_close`].
    drain_before_close: bool,
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.drain_before_close && !self.finished {
            // SAFETY: our open context, freed after this by `enc`'s drop.
            drain_open(unsafe { self.enc.as_mut_ptr() }, !self.fed);
        }
    }
}

/// Ends an open encoder's stream and takes (and drops) what it still
/// holds, so that it can be freed (see
/// [`EncoderEntry::drain_before_close`]): otherwise a job that drops an
/// SVT-AV1 encoder after an error would hang in `avcodec_free_context`.
/// With `prime`, one blank picture goes first, since SVT-AV1 1.4 never
/// answers the end of a stream that had none.
fn drain_open(raw: *mut ffi::AVCodecContext, prime: bool) {
    // SAFETY: `raw` is a context we own; a null frame is the drain request;
    // the packet and frame are ours and freed below.
    unsafe {
        if raw.is_null() || ffi::avcodec_is_open(raw) == 0 {
            return;
        }
        if prime {
            let mut f = ffi::av_frame_alloc();
            if !f.is_null() {
                (*f).format = (*raw).pix_fmt as c_int;
                (*f).width = (*raw).width;
                (*f).height = (*raw).height;
                (*f).pts = 0;
                if ffi::av_frame_get_buffer(f, 0) >= 0 {
                    let lines: [isize; 4] = std::array::from_fn(|i| (*f).linesize[i] as isize);
                    let _ = ffi::av_image_fill_black(
                        (*f).data.as_mut_ptr(),
                        lines.as_ptr(),
                        (*raw).pix_fmt,
                        (*raw).color_range,
                        (*raw).width,
                        (*raw).height,
                    );
                    let _ = ffi::avcodec_send_frame(raw, f);
                }
                ffi::av_frame_free(&mut f);
            }
        }
        let mut pkt = ffi::av_packet_alloc();
        if pkt.is_null() {
            return;
        }
        let again = ffi::AVERROR(ffi::EAGAIN);
        let mut sent = false;
        // Bounded: an encoder holds at most its look-ahead.
        for _ in 0..100_000 {
            if !sent {
                let r = ffi::avcodec_send_frame(raw, std::ptr::null());
                if r >= 0 || r == ffi::AVERROR_EOF {
                    sent = true;
                } else if r != again {
                    break;
                }
            }
            let r = ffi::avcodec_receive_packet(raw, pkt);
            if r >= 0 {
                ffi::av_packet_unref(pkt);
            } else if r != again || sent {
                break;
            }
        }
        ffi::av_packet_free(&mut pkt);
    }
}

/// The H.264 profile an SPS declares, as FFmpeg numbers profiles, from
/// extradata in either avcC or Annex B form.
fn h264_profile(extradata: &[u8]) -> Option<c_int> {
    let (idc, flags) = if extradata.first() == Some(&1) && extradata.len() > 3 {
        (extradata[1], extradata[2])
    } else {
        let sps = extradata
            .windows(4)
            .position(|w| w[0..3] == [0, 0, 1] && w[3] & 0x1f == 7)?;
        let b = extradata.get(sps + 4..sps + 6)?;
        (b[0], b[1])
    };
    let mut profile = c_int::from(idc);
    // constraint_set1 on Baseline and constraint_set3 on the High 4:x:x
    // profiles name distinct profiles, as FFmpeg's h264 parser does.
    if idc == 66 && flags & 0x40 != 0 {
        profile |= ffi::FF_PROFILE_H264_CONSTRAINED;
    }
    if matches!(idc, 110 | 122 | 244) && flags & 0x10 != 0 {
        profile |= ffi::FF_PROFILE_H264_INTRA;
    }
    Some(profile)
}

/// A log line without libav*'s `[libx265 @ 0x55d…] ` prefix, whose address
/// means nothing in a report.
pub(crate) fn without_context(line: &str) -> &str {
    match line.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((ctx, rest)) if ctx.contains(" @ 0x") => rest,
        _ => line,
    }
}

/// At most this many of an encoder's error lines go into a refusal.
const MAX_LOGGED_LINES: usize = 4;

/// An encoder's error lines for a message: the first few, and a count of
/// the rest.
pub(crate) fn summarize(lines: &[String]) -> String {
    let mut out = lines
        .iter()
        .take(MAX_LOGGED_LINES)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if lines.len() > MAX_LOGGED_LINES {
        out.push_str(&format!(
            " (and {} more lines)",
            lines.len() - MAX_LOGGED_LINES
        ));
    }
    out
}

fn new_frame() -> Result<ffmpeg_next::Frame, String> {
    // SAFETY: allocation, checked for null below.
    let f = unsafe { ffmpeg_next::Frame::empty() };
    // SAFETY: reading the pointer.
    if unsafe { f.as_ptr() }.is_null() {
        return Err("out of memory allocating a frame".into());
    }
    Ok(f)
}

/// (Re)allocates a video frame's buffers.
fn alloc_video(
    f: &mut ffmpeg_next::Frame,
    fmt: ffi::AVPixelFormat,
    w: u32,
    h: u32,
) -> Result<(), String> {
    // SAFETY: a valid frame we own.
    unsafe {
        let p = f.as_mut_ptr();
        ffi::av_frame_unref(p);
        (*p).format = fmt as c_int;
        (*p).width = w as c_int;
        (*p).height = h as c_int;
        let r = ffi::av_frame_get_buffer(p, 0);
        if r < 0 {
            return Err(format!("allocating a {w}x{h} frame: {}", av_code(r)));
        }
    }
    Ok(())
}

impl Encoder {
    fn open_video(
        entry: &EncoderEntry,
        cfg: &EncoderSettings,
        raw: *mut ffi::AVCodecContext,
        settings: &mut AvSettings,
    ) -> Result<VideoIn, String> {
        let imp = entry.implementation;
        let fmt_name = pix::name(cfg.pix_fmt).unwrap_or("unknown");
        let av_fmt = pix_to_av(cfg.pix_fmt)
            .filter(|_| entry.pix_fmts.contains(&fmt_name))
            .ok_or_else(|| {
                format!(
                    "{imp} does not take pixel format {} ({fmt_name}); accepted: {}",
                    cfg.pix_fmt,
                    entry.pix_fmts.join(", ")
                )
            })?;
        if let Some(profile) = settings.written("profile") {
            if let Some((_, fmts)) = entry.profile_pix_fmts.iter().find(|(p, _)| *p == profile) {
                if !fmts.contains(&fmt_name) {
                    return Err(format!(
                        "{imp}: profile `{profile}` cannot carry {fmt_name}; it takes: {}",
                        fmts.join(", ")
                    ));
                }
            }
        }
        let layout = pix::layout(cfg.pix_fmt).expect("every ABI format has a layout");
        if cfg.width == 0 || cfg.height == 0 || cfg.width > 16384 || cfg.height > 16384 {
            return Err(format!(
                "{imp}: frame size {}x{} is outside 1x1 to 16384x16384",
                cfg.width, cfg.height
            ));
        }
        if !cfg.width.is_multiple_of(1 << layout.chroma_shift_x)
            || !cfg.height.is_multiple_of(1 << layout.chroma_shift_y)
        {
            return Err(format!(
                "{imp}: {fmt_name} subsamples chroma, so {}x{} must be a multiple of {}x{}",
                cfg.width,
                cfg.height,
                1 << layout.chroma_shift_x,
                1 << layout.chroma_shift_y
            ));
        }
        if !is_positive(cfg.time_base) {
            return Err(format!(
                "{imp}: time_base {}/{} must have a positive numerator and denominator",
                cfg.time_base.num, cfg.time_base.den
            ));
        }
        if !is_positive(cfg.frame_rate) {
            return Err(format!(
                "{imp}: frame_rate {}/{} must have a positive numerator and denominator",
                cfg.frame_rate.num, cfg.frame_rate.den
            ));
        }
        let color = av_color(cfg.color).map_err(|e| format!("{imp}: {e}"))?;
        // SAFETY: a fresh, unopened context.
        unsafe {
            (*raw).width = cfg.width as c_int;
            (*raw).height = cfg.height as c_int;
            (*raw).pix_fmt = av_fmt;
            (*raw).time_base = av_rational(cfg.time_base);
            (*raw).framerate = av_rational(cfg.frame_rate);
            (*raw).sample_aspect_ratio = ffi::AVRational { num: 1, den: 1 };
            (*raw).color_primaries = color.primaries;
            (*raw).color_trc = color.transfer;
            (*raw).colorspace = color.matrix;
            (*raw).color_range = color.range;
        }
        // ffmpeg-next leaves codec threads at 1; x264, prores_ks and dnxhd
        // only use the machine when told to.
        let threads = if cfg.threads == 0 {
            "auto".to_owned()
        } else {
            cfg.threads.to_string()
        };
        settings.set("threads", &threads);
        let interlaced = match settings.take(caps::INTERLACED_OPTION).as_deref() {
            None => None,
            Some(order) => {
                let tff = order == "tff";
                settings.set("flags", "+ildct+ilme");
                // SAFETY: a fresh, unopened context.
                unsafe {
                    (*raw).field_order = if tff {
                        ffi::AVFieldOrder::AV_FIELD_TT
                    } else {
                        ffi::AVFieldOrder::AV_FIELD_BB
                    };
                }
                Some(tff)
            }
        };
        let mut work = new_frame()?;
        alloc_video(&mut work, av_fmt, cfg.width, cfg.height)?;
        Ok(VideoIn {
            work,
            spares: Vec::new(),
            width: cfg.width,
            height: cfg.height,
            pix_fmt: cfg.pix_fmt,
            av_fmt,
            layout,
            time_base: cfg.time_base,
            color,
            interlaced,
        })
    }

    /// Sets up an audio context; returns its input layout and sample format.
    fn prepare_audio(
        entry: &EncoderEntry,
        cfg: &EncoderSettings,
        codec: *const ffi::AVCodec,
        raw: *mut ffi::AVCodecContext,
    ) -> Result<(Layout, ffi::AVSampleFormat), String> {
        let imp = entry.implementation;
        if !matches!(cfg.channels, 1 | 2 | 6) {
            return Err(format!(
                "{imp}: {} channels is not offered; accepted: 1 (mono), 2 (stereo), 6 (5.1)",
                cfg.channels
            ));
        }
        // SAFETY: a static codec; its lists end with 0 / NONE.
        let (rates, fmts) = unsafe {
            let mut rates = Vec::new();
            let mut p = (*codec).supported_samplerates;
            while !p.is_null() && *p != 0 {
                rates.push(*p as u32);
                p = p.add(1);
            }
            let mut fmts = Vec::new();
            let mut p = (*codec).sample_fmts;
            while !p.is_null() && *p != ffi::AVSampleFormat::AV_SAMPLE_FMT_NONE {
                fmts.push(*p);
                p = p.add(1);
            }
            (rates, fmts)
        };
        if cfg.sample_rate == 0 || (!rates.is_empty() && !rates.contains(&cfg.sample_rate)) {
            let accepted = if rates.is_empty() {
                "any positive rate".to_owned()
            } else {
                rates
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "{imp}: sample rate {} Hz is not accepted; accepted: {accepted}",
                cfg.sample_rate
            ));
        }
        use ffi::AVSampleFormat::{AV_SAMPLE_FMT_FLT, AV_SAMPLE_FMT_FLTP};
        // Float formats first: the host's samples are f32, so no precision
        // is lost on the way in.
        let sample_fmt = [AV_SAMPLE_FMT_FLTP, AV_SAMPLE_FMT_FLT]
            .into_iter()
            .find(|f| fmts.contains(f))
            .or_else(|| fmts.first().copied())
            .unwrap_or(AV_SAMPLE_FMT_FLTP);
        let layout = Layout::default_for(cfg.channels);
        // SAFETY: a fresh, unopened context.
        unsafe {
            (*raw).sample_rate = cfg.sample_rate as c_int;
            (*raw).sample_fmt = sample_fmt;
            ffi::av_channel_layout_copy(&mut (*raw).ch_layout, &layout.0);
            (*raw).time_base = ffi::AVRational {
                num: 1,
                den: cfg.sample_rate as c_int,
            };
            if (*raw).bit_rate <= 0 {
                (*raw).bit_rate = DEFAULT_AUDIO_BIT_RATE;
            }
        }
        Ok((layout, sample_fmt))
    }

    /// Sends pending frames (and the drain request after them); returns
    /// whether anything was sent.
    fn pump(&mut self) -> Result<bool, String> {
        let mut progressed = false;
        while let Some(f) = self.pending.front() {
            match self.enc.send_frame(f) {
                Ok(()) => {
                    self.pending.pop_front();
                    self.fed = true;
                    progressed = true;
                }
                Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
                    break
                }
                Err(e) => return Err(format!("{}: {}", self.what, crate::ffi_util::av_err(e))),
            }
        }
        if self.pending.is_empty() && self.eof_requested && !self.eof_sent {
            // Draining can only fail if already draining, which is fine.
            let _ = self.enc.send_eof();
            self.eof_sent = true;
            progressed = true;
        }
        Ok(progressed)
    }

    /// Makes one audio frame of `n` samples from the first `n` in the FIFO
    /// (padding with silence up to `pad_to`).
    fn queue_audio(&mut self, n: usize, pad_to: usize) -> Result<(), String> {
        let a = self.audio.as_mut().expect("audio encoder");
        let ch = a.channels as usize;
        let size = n.max(pad_to);
        let mut samples: Vec<f32> = a.fifo.drain(..n * ch).collect();
        samples.resize(size * ch, 0.0);
        let mut f = new_frame()?;
        // SAFETY: a fresh frame we own; the resampler's output format and
        // layout are the encoder's.
        unsafe {
            let p = f.as_mut_ptr();
            (*p).format = a.swr.out_format() as c_int;
            (*p).nb_samples = size as c_int;
            (*p).sample_rate = a.sample_rate as c_int;
            ffi::av_channel_layout_copy(&mut (*p).ch_layout, &a.layout.0);
            let r = ffi::av_frame_get_buffer(p, 0);
            if r < 0 {
                return Err(format!(
                    "{}: allocating an audio frame: {}",
                    self.what,
                    av_code(r)
                ));
            }
            let planes = if ffi::av_sample_fmt_is_planar(a.swr.out_format()) != 0 {
                ch
            } else {
                1
            };
            let out: Vec<*mut u8> = (0..planes).map(|i| *(*p).extended_data.add(i)).collect();
            let input = [samples.as_ptr() as *const u8];
            let got = a.swr.run(&out, size, Some(&input), size)?;
            if got != size {
                return Err(format!(
                    "{}: sample format conversion returned {got} of {size} samples",
                    self.what
                ));
            }
            let pts = a.next_pts.unwrap_or(0);
            (*p).pts = pts;
            a.next_pts = Some(pts + n as i64);
        }
        self.pending.push_back(f);
        Ok(())
    }
}

impl plugin::Encoder for Encoder {
    fn open(cfg: &EncoderSettings) -> PResult<(Self, StreamInfo)> {
        crate::ensure_init();
        clear_last_error();
        if cfg.media != media::VIDEO && cfg.media != media::AUDIO {
            return Err(format!(
                "encoder media must be {} (video) or {} (audio), not {}",
                media::VIDEO,
                media::AUDIO,
                cfg.media
            ));
        }
        let entry = caps::select_encoder(&cfg.codec, &cfg.implementation, cfg.media)?;
        let imp = entry.implementation;
        let mut settings = options::parse(
            &cfg.options,
            entry.options,
            &format!("{imp} encoder options"),
        )?;
        let codec = caps::find_encoder(imp).ok_or_else(|| format!("encoder `{imp}` vanished"))?;
        // SAFETY: allocation with a static codec; checked for null.
        let raw = unsafe { ffi::avcodec_alloc_context3(codec) };
        if raw.is_null() {
            return Err(format!("{imp}: out of memory"));
        }
        // SAFETY: a fresh context we own; freed by Context's drop.
        let ctx = unsafe { codec::Context::wrap(raw, None) };
        // SAFETY: a fresh, unopened context.
        unsafe {
            if cfg.global_header {
                (*raw).flags |= ffi::AV_CODEC_FLAG_GLOBAL_HEADER as c_int;
            }
            if cfg.bit_rate > 0 {
                (*raw).bit_rate = cfg.bit_rate;
            }
        }
        let (video, audio_setup) = if cfg.media == media::VIDEO {
            (
                Some(Self::open_video(entry, cfg, raw, &mut settings)?),
                None,
            )
        } else {
            (None, Some(Self::prepare_audio(entry, cfg, codec, raw)?))
        };

        let mut dict = settings.to_dictionary();
        // SAFETY: the dictionary is handed to FFmpeg and taken back with what
        // it did not consume.
        let (r, leftover) = unsafe {
            let mut d = dict.disown();
            crate::ffmpeg_log::capture_start();
            let r = ffi::avcodec_open2(raw, codec, &mut d);
            dict = ffmpeg_next::Dictionary::own(d);
            (r, dict)
        };
        let logged = crate::ffmpeg_log::capture_end();
        // One line, for reports and logs.
        let shown = if cfg.options.trim().is_empty() {
            "none".to_owned()
        } else {
            cfg.options.trim().lines().collect::<Vec<_>>().join("; ")
        };
        if r < 0 {
            clear_last_error();
            let errors: Vec<String> = logged
                .iter()
                .filter(|(lvl, _)| *lvl <= ffi::AV_LOG_ERROR)
                .map(|(_, l)| without_context(l).to_owned())
                .collect();
            let (w, h) = (cfg.width, cfg.height);
            let fmt = pix::name(cfg.pix_fmt).unwrap_or("?");
            let said = entry
                .explain
                .and_then(|f| f(&errors, w, h, fmt))
                .unwrap_or_else(|| summarize(&errors));
            let code = ffmpeg_next::Error::from(r);
            return Err(if said.is_empty() {
                format!("{imp} refused the settings (options: {shown}): {code}")
            } else {
                format!(
                    "{imp} refused the settings (options: {shown}): {code}; FFmpeg said: {said}"
                )
            });
        }
        // An encoder that opened but logged an error, or a warning that means
        // a setting was dropped, would encode something the preset did not
        // ask for: refuse instead.
        if let Some((_, line)) = logged.iter().find(|(lvl, line)| {
            *lvl <= ffi::AV_LOG_ERROR || entry.fatal_warnings.iter().any(|w| line.contains(w))
        }) {
            if entry.drain_before_close {
                drain_open(raw, true);
            }
            return Err(format!(
                "{imp} did not take the settings as given (options: {shown}): {}",
                without_context(line)
            ));
        }
        let unused: Vec<String> = leftover.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !unused.is_empty() {
            if entry.drain_before_close {
                drain_open(raw, true);
            }
            return Err(format!(
                "this FFmpeg build's {imp} does not know the setting(s) {}",
                unused.join(", ")
            ));
        }
        let enc = ffmpeg_next::encoder::Encoder(ctx);

        // SAFETY: an open context.
        let c = unsafe { &*raw };
        let extradata = read_extradata(c.extradata, c.extradata_size);
        let mut profile = c.profile;
        if profile == ffi::FF_PROFILE_UNKNOWN && c.codec_id == ffi::AVCodecID::AV_CODEC_ID_H264 {
            profile = h264_profile(&extradata).unwrap_or(profile);
        }
        if profile == ffi::FF_PROFILE_UNKNOWN {
            // Encoders with a private `profile` option leave the context's
            // unknown; the muxer needs it (MOV picks ProRes and DNxHR
            // sample entries by it).
            if let Some(asked) = settings.written("profile") {
                profile = entry
                    .profile_ids
                    .iter()
                    .find(|(name, _)| *name == asked)
                    .map_or(profile, |(_, id)| *id);
            } else if let Some((_, auto)) = entry
                .auto_profiles
                .iter()
                .find(|(fmt, _)| Some(*fmt) == pix::name(cfg.pix_fmt))
            {
                profile = entry
                    .profile_ids
                    .iter()
                    .find(|(name, _)| name == auto)
                    .map_or(profile, |(_, id)| *id);
            }
        }
        let mut info = StreamInfo {
            media: cfg.media,
            codec: codec_name(c.codec_id),
            profile: profile_name(c.codec_id, profile),
            bit_rate: c.bit_rate,
            time_base: abi_rational(c.time_base),
            extradata,
            ..StreamInfo::default()
        };
        let what = format!("{} encoder ({imp})", info.codec);
        let (frame_duration, audio) = if let Some(v) = &video {
            info.width = v.width;
            info.height = v.height;
            info.pix_fmt = v.pix_fmt;
            info.color = abi::ColorTags {
                primaries: c.color_primaries as u32,
                transfer: c.color_trc as u32,
                matrix: c.colorspace as u32,
                range: c.color_range as u32,
            };
            info.frame_rate = cfg.frame_rate;
            let one_frame = ffi::AVRational {
                num: cfg.frame_rate.den,
                den: cfg.frame_rate.num,
            };
            (rescale(1, one_frame, c.time_base).max(1), None)
        } else {
            let (layout, _) = audio_setup.expect("audio set up");
            // SAFETY: static codec.
            let caps_bits = unsafe { (*codec).capabilities } as u32;
            let variable = caps_bits & ffi::AV_CODEC_CAP_VARIABLE_FRAME_SIZE != 0;
            let frame_size = if c.frame_size > 0 && !variable {
                c.frame_size as usize
            } else {
                VARIABLE_FRAME_SIZE
            };
            info.sample_rate = c.sample_rate as u32;
            info.channels = layout.channels();
            info.frame_size = frame_size as u32;
            info.initial_padding = c.initial_padding.max(0) as u32;
            let swr = Resampler::new(
                ffi::AVSampleFormat::AV_SAMPLE_FMT_FLT,
                c.sample_rate,
                Layout::copy_of(&layout.0),
                c.sample_fmt,
                c.sample_rate,
                Layout::copy_of(&layout.0),
            )?;
            (
                frame_size as i64,
                Some(AudioIn {
                    fifo: Vec::new(),
                    channels: layout.channels(),
                    sample_rate: c.sample_rate as u32,
                    frame_size,
                    small_last: variable || caps_bits & ffi::AV_CODEC_CAP_SMALL_LAST_FRAME != 0,
                    next_pts: None,
                    swr,
                    layout,
                }),
            )
        };
        let time_base = c.time_base;
        plugin::log(
            plugin::level::DEBUG,
            "ffmpeg",
            &format!(
                "opened {what}: {} profile, settings {:?}",
                info.profile, settings.0
            ),
        );
        Ok((
            Encoder {
                what,
                enc,
                time_base,
                frame_duration,
                video,
                audio,
                pending: VecDeque::new(),
                eof_requested: false,
                eof_sent: false,
                finished: false,
                fed: false,
                drain_before_close: entry.drain_before_close,
            },
            info,
        ))
    }

    fn send_video(&mut self, frame: Option<&VideoView<'_>>) -> PResult<()> {
        let what = self.what.clone();
        let Some(vin) = self.video.as_mut() else {
            return Err(format!("{what} encodes audio; frames go to send_audio"));
        };
        let Some(v) = frame else {
            self.eof_requested = true;
            self.pump()?;
            return Ok(());
        };
        if self.eof_requested {
            return Err(format!("{what}: a frame was sent after the drain request"));
        }
        if (v.width, v.height, v.pix_fmt) != (vin.width, vin.height, vin.pix_fmt) {
            return Err(format!(
                "{what} was opened for {}x{} {} but got a {}x{} {} frame",
                vin.width,
                vin.height,
                pix::name(vin.pix_fmt).unwrap_or("?"),
                v.width,
                v.height,
                pix::name(v.pix_fmt).unwrap_or("unknown format")
            ));
        }
        let l = vin.layout;
        if v.n_planes < l.planes {
            return Err(format!(
                "{what}: frame has {} planes, {} expected",
                v.n_planes, l.planes
            ));
        }
        // SAFETY: a frame we own.
        if unsafe { ffi::av_frame_is_writable(vin.work.as_mut_ptr()) } == 0 {
            // The encoder still references the last picture: take a spare
            // it has let go of, or new buffers (never a copy of the old
            // picture first), and keep the held one for later.
            // SAFETY: frames we own.
            let free = vin
                .spares
                .iter_mut()
                .position(|f| unsafe { ffi::av_frame_is_writable(f.as_mut_ptr()) } != 0);
            let next = match free {
                Some(i) => vin.spares.swap_remove(i),
                None => {
                    let mut f = new_frame()?;
                    alloc_video(&mut f, vin.av_fmt, vin.width, vin.height)?;
                    f
                }
            };
            let held = std::mem::replace(&mut vin.work, next);
            if vin.spares.len() < MAX_SPARE_FRAMES {
                vin.spares.push(held);
            }
        }
        // SAFETY: the work frame holds a writable image of this size/format.
        let dst = unsafe { &mut *vin.work.as_mut_ptr() };
        for i in 0..l.planes {
            let rows = plane_rows(l, i, v.height);
            let row = plane_row_bytes(l, i, v.width);
            let (src, stride) = v.planes[i];
            if stride < row || src.len() < stride * (rows - 1) + row {
                return Err(format!(
                    "{what}: plane {i} has stride {stride} and {} bytes; {rows} rows of {row} bytes need more",
                    src.len()
                ));
            }
            let dstride = dst.linesize[i] as usize;
            for r in 0..rows {
                // SAFETY: rows fit in both planes (checked above for the
                // source; av_frame_get_buffer sized the destination).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.as_ptr().add(r * stride),
                        dst.data[i].add(r * dstride),
                        row,
                    );
                }
            }
        }
        dst.pts = if is_positive(v.time_base) && v.time_base != vin.time_base {
            rescale(v.pts, av_rational(v.time_base), av_rational(vin.time_base))
        } else {
            v.pts
        };
        dst.color_primaries = vin.color.primaries;
        dst.color_trc = vin.color.transfer;
        dst.colorspace = vin.color.matrix;
        dst.color_range = vin.color.range;
        if let Some(tff) = vin.interlaced {
            dst.interlaced_frame = 1;
            dst.top_field_first = c_int::from(tff);
        }
        dst.pict_type = if v.key {
            ffi::AVPictureType::AV_PICTURE_TYPE_I
        } else {
            ffi::AVPictureType::AV_PICTURE_TYPE_NONE
        };
        // SAFETY: a new reference to the same buffers, for the queue.
        let queued = unsafe { ffi::av_frame_clone(vin.work.as_ptr()) };
        if queued.is_null() {
            return Err(format!("{what}: out of memory"));
        }
        // SAFETY: a frame we own from here on.
        self.pending
            .push_back(unsafe { ffmpeg_next::Frame::wrap(queued) });
        self.pump()?;
        Ok(())
    }

    fn send_audio(&mut self, frame: Option<&AudioView<'_>>) -> PResult<()> {
        let what = self.what.clone();
        let Some(a) = self.audio.as_mut() else {
            return Err(format!("{what} encodes video; samples go to send_video"));
        };
        let (ch, size) = (a.channels as usize, a.frame_size);
        let Some(v) = frame else {
            if !self.eof_requested {
                let rest = a.fifo.len() / ch;
                if rest > 0 {
                    let pad_to = if a.small_last { rest } else { size };
                    self.queue_audio(rest, pad_to)?;
                }
                self.eof_requested = true;
            }
            self.pump()?;
            return Ok(());
        };
        if self.eof_requested {
            return Err(format!("{what}: samples were sent after the drain request"));
        }
        if v.channels != a.channels || (v.sample_rate != 0 && v.sample_rate != a.sample_rate) {
            return Err(format!(
                "{what} was opened for {} Hz, {} channels but got {} Hz, {} channels",
                a.sample_rate, a.channels, v.sample_rate, v.channels
            ));
        }
        if v.samples.len() % ch != 0 {
            return Err(format!(
                "{what}: {} samples do not divide into {ch} channels",
                v.samples.len()
            ));
        }
        if a.next_pts.is_none() {
            a.next_pts = Some(v.pts);
        }
        a.fifo.extend_from_slice(v.samples);
        while self
            .audio
            .as_ref()
            .is_some_and(|a| a.fifo.len() >= size * ch)
        {
            self.queue_audio(size, size)?;
        }
        self.pump()?;
        Ok(())
    }

    fn receive(&mut self) -> PResult<Result<OwnedPacket, i32>> {
        loop {
            let mut pkt = Packet::empty();
            match self.enc.receive_packet(&mut pkt) {
                Ok(()) => {
                    let duration = if pkt.duration() > 0 {
                        pkt.duration()
                    } else {
                        self.frame_duration
                    };
                    return Ok(Ok(OwnedPacket {
                        data: pkt.data().map(<[u8]>::to_vec).unwrap_or_default(),
                        pts: pkt.pts().unwrap_or(ffi::AV_NOPTS_VALUE),
                        dts: pkt.dts().unwrap_or(ffi::AV_NOPTS_VALUE),
                        duration,
                        time_base: abi_rational(self.time_base),
                        key: pkt.is_key(),
                    }));
                }
                Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
                    let waiting =
                        !self.pending.is_empty() || (self.eof_requested && !self.eof_sent);
                    if !waiting {
                        return Ok(Err(status::NEED_MORE));
                    }
                    if !self.pump()? {
                        return Err(format!(
                            "{}: the encoder takes neither input nor gives output",
                            self.what
                        ));
                    }
                }
                Err(ffmpeg_next::Error::Eof) => {
                    self.finished = true;
                    return Ok(Err(status::EOF));
                }
                Err(e) => return Err(format!("{}: {}", self.what, crate::ffi_util::av_err(e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{h264_profile, summarize, without_context};

    #[test]
    fn log_lines_lose_their_context_address() {
        assert_eq!(
            without_context("[libx265 @ 0x7f43d4001d40] Unknown option: bogus."),
            "Unknown option: bogus."
        );
        assert_eq!(
            without_context("x265 [error]: main profile"),
            "x265 [error]: main profile"
        );
        assert_eq!(without_context("[a] b"), "[a] b");
    }

    #[test]
    fn refusals_keep_a_few_lines() {
        let lines: Vec<String> = (1..=6).map(|i| format!("line {i}")).collect();
        assert_eq!(
            summarize(&lines),
            "line 1; line 2; line 3; line 4 (and 2 more lines)"
        );
        assert_eq!(summarize(&lines[..1]), "line 1");
        assert_eq!(summarize(&[]), "");
    }

    #[test]
    fn reads_profile_from_annex_b_and_avcc() {
        assert_eq!(h264_profile(&[0, 0, 0, 1, 0x67, 100, 0, 30]), Some(100));
        assert_eq!(h264_profile(&[1, 77, 0x40, 30, 0xff]), Some(77));
        assert_eq!(
            h264_profile(&[0, 0, 1, 0x67, 66, 0x40, 30]),
            Some(66 | ffmpeg_next::ffi::FF_PROFILE_H264_CONSTRAINED)
        );
        assert_eq!(h264_profile(&[0, 0, 1, 0x68, 1, 2]), None);
    }
}

/// The new encoders, opened for real: their refusals must name what to fix.
#[cfg(test)]
mod open_tests {
    use super::Encoder;
    use deliver_plugin_api::abi::{self, media, pix};
    use deliver_plugin_api::plugin::{Encoder as _, EncoderSettings};

    fn video(codec: &str, imp: &str, pix_fmt: u32, options: &str) -> EncoderSettings {
        EncoderSettings {
            media: media::VIDEO,
            codec: codec.into(),
            implementation: imp.into(),
            width: 640,
            height: 360,
            pix_fmt,
            frame_rate: abi::Rational::new(25, 1),
            time_base: abi::Rational::new(1, 25),
            color: abi::ColorTags::BT709_LIMITED,
            global_header: true,
            options: options.into(),
            ..EncoderSettings::default()
        }
    }

    fn refusal(s: &EncoderSettings) -> String {
        match Encoder::open(s) {
            Ok(_) => panic!("{} opened with {:?}", s.implementation, s.options),
            Err(e) => e,
        }
    }

    #[test]
    fn prores_streams_carry_the_asked_profile() {
        for (p, fmt, name) in [
            ("proxy", pix::YUV422P10, "Proxy"),
            ("hq", pix::YUV422P10, "HQ"),
            ("4444xq", pix::YUV444P10, "XQ"),
        ] {
            let (_, info) = Encoder::open(&video(
                "prores",
                "prores_ks",
                fmt,
                &format!("profile = \"{p}\""),
            ))
            .unwrap();
            assert_eq!(
                (info.codec.as_str(), info.profile.as_str()),
                ("prores", name)
            );
        }
        let e = refusal(&video(
            "prores",
            "prores_ks",
            pix::YUV444P10,
            "profile = \"hq\"",
        ));
        assert!(
            e.contains("`hq` cannot carry yuv444p10le; it takes: yuv422p10le"),
            "{e}"
        );
        let e = refusal(&video("prores", "prores_ks", pix::YUV420P, ""));
        assert!(e.contains("accepted: yuv422p10le, yuv444p10le"), "{e}");
    }

    #[test]
    fn dnxhd_names_the_bit_rate_classes_it_would_take() {
        let mut s = video("dnxhd", "dnxhd", pix::YUV422P, "profile = \"dnxhd\"");
        (s.width, s.height, s.bit_rate) = (1920, 1080, 100_000_000);
        let e = refusal(&s);
        assert!(e.contains("dnxhd refused the settings"), "{e}");
        assert!(
            e.contains("1920x1080 progressive yuv422p") && e.contains("120Mbps"),
            "{e}"
        );
        s.bit_rate = 120_000_000;
        let (_, info) = Encoder::open(&s).unwrap();
        assert_eq!(info.profile, "DNXHD");
        let mut s = video("dnxhd", "dnxhd", pix::YUV422P10, "profile = \"dnxhr_hqx\"");
        (s.width, s.height) = (1920, 1080);
        assert_eq!(Encoder::open(&s).unwrap().1.profile, "DNXHR HQX");
        let e = refusal(&video(
            "dnxhd",
            "dnxhd",
            pix::YUV422P,
            "profile = \"dnxhr_444\"",
        ));
        assert!(e.contains("`dnxhr_444` cannot carry yuv422p"), "{e}");
    }

    #[test]
    fn mpeg2_422_long_gop_opens_and_reports_its_profile() {
        let mut s = video(
            "mpeg2video",
            "mpeg2video",
            pix::YUV422P,
            "profile = \"422\"\ngop = 12\nbframes = 2\nclosed_gop = true\n\
             min_rate = 50000000\nmax_rate = 50000000\nbuffer_size = 36408333",
        );
        s.bit_rate = 50_000_000;
        let (_, info) = Encoder::open(&s).unwrap();
        assert_eq!(info.profile, "4:2:2");
        let e = refusal(&video(
            "mpeg2video",
            "mpeg2video",
            pix::YUV422P,
            "profile = \"main\"",
        ));
        assert!(e.contains("`main` cannot carry yuv422p"), "{e}");
    }

    #[test]
    fn x265_profiles_and_parameters_are_held_to() {
        let s = video(
            "hevc",
            "libx265",
            pix::YUV420P10,
            "profile = \"main10\"\npreset = \"ultrafast\"\nx265_params = \"log-level=error\"",
        );
        assert_eq!(Encoder::open(&s).unwrap().1.profile, "Main 10");
        let e = refusal(&video(
            "hevc",
            "libx265",
            pix::YUV420P10,
            "profile = \"main\"",
        ));
        assert!(e.contains("`main` cannot carry yuv420p10le"), "{e}");
        // x265 only warns about a parameter it does not know; refused here.
        let e = refusal(&video(
            "hevc",
            "libx265",
            pix::YUV420P,
            "preset = \"ultrafast\"\nx265_params = \"no-such-thing=1:log-level=error\"",
        ));
        assert!(
            e.contains("did not take the settings") && e.contains("no-such-thing"),
            "{e}"
        );
    }

    #[test]
    fn svtav1_opens_at_8_and_10_bits_and_refuses_bad_parameters() {
        for fmt in [pix::YUV420P, pix::YUV420P10] {
            let (_, info) = Encoder::open(&video(
                "av1",
                "libsvtav1",
                fmt,
                "preset = 12\ncrf = 40\nprofile = \"main\"\nclosed_gop = true",
            ))
            .unwrap();
            assert_eq!(
                (info.codec.as_str(), info.profile.as_str()),
                ("av1", "Main")
            );
            // The sequence header, for MP4's av1C and WebM's CodecPrivate.
            assert!(!info.extradata.is_empty());
        }
        let e = refusal(&video(
            "av1",
            "libsvtav1",
            pix::YUV420P,
            "preset = 12\nsvtav1_params = \"no-such-thing=1\"",
        ));
        assert!(
            e.contains("did not take the settings") && e.contains("no-such-thing"),
            "{e}"
        );
        let e = refusal(&video("av1", "libsvtav1", pix::YUV422P10, ""));
        assert!(e.contains("accepted: yuv420p, yuv420p10le"), "{e}");
    }
}
