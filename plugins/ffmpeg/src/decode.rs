//! Decoding: whole files through libavformat ([`FileDecoder`]) and bare
//! packets of one stream ([`StreamDecoder`], which is what validation uses to
//! decode an encoder's own output).

use crate::convert::{AudioOut, VideoOut};
use crate::ffi_util::{
    abi_rational, av_code, av_err, av_extradata, codec_name, cstr, find_decoder, name, pix_from_av,
    pix_name, profile_id, profile_name, prores_tag, rescale, to_us, Layout,
};
use crate::ffmpeg_log::clear_last_error;
use deliver_plugin_api::abi::{self, media, status};
use deliver_plugin_api::plugin::{self, level, log, FrameView, PResult, PacketView, StreamInfo};
use ffmpeg_next::{codec, decoder, ffi, format, frame, media as ff_media, Packet};
use std::collections::VecDeque;
use std::ffi::c_int;

/// What one attempt to take a frame from a decoder gave.
enum Got {
    Frame,
    Again,
    Eof,
}

fn receive(dec: &mut decoder::Opened, f: &mut ffmpeg_next::Frame) -> Result<Got, String> {
    match dec.receive_frame(f) {
        Ok(()) => Ok(Got::Frame),
        Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
            Ok(Got::Again)
        }
        Err(ffmpeg_next::Error::Eof) => Ok(Got::Eof),
        Err(e) => Err(av_err(e)),
    }
}

/// Outcome of sending one packet.
enum Sent {
    Taken,
    Full,
}

/// Sends a packet; a corrupt packet is logged and skipped, as the `ffmpeg`
/// CLI does, so one bad packet does not end the decode (frame counts and
/// quality checks downstream still see the damage).
fn send(dec: &mut decoder::Opened, p: &Packet, what: &str) -> Result<Sent, String> {
    match dec.send_packet(p) {
        Ok(()) => Ok(Sent::Taken),
        Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
            Ok(Sent::Full)
        }
        Err(ffmpeg_next::Error::InvalidData) => {
            log(
                level::WARN,
                "ffmpeg",
                &format!("{what}: skipped a packet the decoder found invalid"),
            );
            Ok(Sent::Taken)
        }
        Err(e) => Err(format!("{what}: {}", av_err(e))),
    }
}

/// Opens `codec` on a context whose parameters are already set.
fn open_decoder(
    mut ctx: codec::Context,
    codec: *const ffi::AVCodec,
    threads: u32,
    what: &str,
) -> Result<decoder::Opened, String> {
    // SAFETY: a fresh, unopened context and a static codec.
    unsafe {
        let p = ctx.as_mut_ptr();
        // 0 lets FFmpeg pick one thread per core.
        (*p).thread_count = threads as c_int;
        (*p).thread_type = ffi::FF_THREAD_FRAME | ffi::FF_THREAD_SLICE;
        clear_last_error();
        let r = ffi::avcodec_open2(p, codec, std::ptr::null_mut());
        if r < 0 {
            return Err(format!(
                "{what}: cannot open decoder `{}`: {}",
                cstr((*codec).name),
                av_code(r)
            ));
        }
    }
    Ok(decoder::Opened(ctx.decoder()))
}

struct VideoTrack {
    index: usize,
    dec: decoder::Opened,
    tb: ffi::AVRational,
    frame: frame::Video,
    out: VideoOut,
    eof: bool,
}

impl VideoTrack {
    /// Takes the next frame into `out`; false when the decoder needs input
    /// or is drained.
    fn pull(&mut self) -> Result<bool, String> {
        match receive(&mut self.dec, &mut self.frame)? {
            Got::Frame => {
                self.out.process(&self.frame, abi_rational(self.tb))?;
                Ok(true)
            }
            Got::Again => Ok(false),
            Got::Eof => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    fn view(&self) -> FrameView<'_> {
        FrameView::Video(self.out.view(&self.frame))
    }
}

/// One audio stream of the file and its decoder.
struct Member {
    index: usize,
    dec: decoder::Opened,
    frame: frame::Audio,
    /// Decoded samples not yet merged (mono tracks only).
    queue: VecDeque<f32>,
    eof: bool,
}

/// The file's audio: one stream, or several mono streams (one per channel,
/// as MXF and broadcast MOV carry a programme) merged in stream order into
/// one stream of that many channels.
struct AudioTrack {
    members: Vec<Member>,
    tb: ffi::AVRational,
    out: AudioOut,
    eof: bool,
    /// Merged tracks: the first track's first timestamp, the sample rate
    /// and the samples merged since, which time the merged frames.
    start: Option<i64>,
    rate: i32,
    merged_samples: i64,
    merged: frame::Audio,
}

impl AudioTrack {
    fn new(members: Vec<Member>, tb: ffi::AVRational, rate: i32, out: AudioOut) -> AudioTrack {
        AudioTrack {
            members,
            tb,
            out,
            eof: false,
            start: None,
            rate,
            merged_samples: 0,
            merged: frame::Audio::empty(),
        }
    }

    fn has(&self, stream: usize) -> Option<usize> {
        self.members.iter().position(|m| m.index == stream)
    }

    /// Takes decoded audio until some converted samples are ready; false
    /// when the decoder needs input or is drained.
    fn pull(&mut self) -> Result<bool, String> {
        if self.members.len() == 1 {
            let m = &mut self.members[0];
            loop {
                match receive(&mut m.dec, &mut m.frame)? {
                    Got::Frame => {
                        if self.out.push(&m.frame, self.tb)? > 0 {
                            return Ok(true);
                        }
                    }
                    Got::Again => return Ok(false),
                    Got::Eof => {
                        self.eof = true;
                        return Ok(false);
                    }
                }
            }
        }
        loop {
            for m in self.members.iter_mut().filter(|m| !m.eof) {
                loop {
                    match receive(&mut m.dec, &mut m.frame)? {
                        Got::Frame => {
                            if self.start.is_none() {
                                // SAFETY: a decoded frame.
                                let f = unsafe { &*m.frame.as_ptr() };
                                let ts = if f.best_effort_timestamp != ffi::AV_NOPTS_VALUE {
                                    f.best_effort_timestamp
                                } else {
                                    f.pts
                                };
                                self.start = Some(if ts == ffi::AV_NOPTS_VALUE { 0 } else { ts });
                            }
                            mono_samples(&m.frame, &mut m.queue)?;
                        }
                        Got::Again => break,
                        Got::Eof => {
                            m.eof = true;
                            break;
                        }
                    }
                }
            }
            let all_eof = self.members.iter().all(|m| m.eof);
            let ready = self.members.iter().map(|m| m.queue.len());
            // Tracks end together in a well-made file; a short one is
            // padded with silence at the end rather than losing the others.
            let n = if all_eof {
                ready.max().unwrap_or(0)
            } else {
                ready.min().unwrap_or(0)
            };
            if n == 0 {
                if all_eof {
                    self.eof = true;
                }
                return Ok(false);
            }
            self.merge(n)?;
            if self.out.push(&self.merged, self.tb)? > 0 {
                return Ok(true);
            }
        }
    }

    /// Moves `n` samples of every track into the merged planar frame.
    fn merge(&mut self, n: usize) -> Result<(), String> {
        let channels = self.members.len();
        let tb = self.tb;
        let pts = self.start.unwrap_or(0)
            + rescale(
                self.merged_samples,
                ffi::AVRational {
                    num: 1,
                    den: self.rate.max(1),
                },
                tb,
            );
        // SAFETY: the frame is ours; unref resets it, get_buffer allocates
        // `n` planar float samples per channel for the layout set.
        unsafe {
            let f = self.merged.as_mut_ptr();
            ffi::av_frame_unref(f);
            (*f).format = ffi::AVSampleFormat::AV_SAMPLE_FMT_FLTP as c_int;
            (*f).nb_samples = n as c_int;
            (*f).sample_rate = self.rate;
            let l = Layout::default_for(channels as u32);
            if ffi::av_channel_layout_copy(&mut (*f).ch_layout, &l.0) < 0 {
                return Err("merging mono audio tracks: out of memory".into());
            }
            (*f).pts = pts;
            (*f).best_effort_timestamp = pts;
            let r = ffi::av_frame_get_buffer(f, 0);
            if r < 0 {
                return Err(format!("merging mono audio tracks: {}", av_code(r)));
            }
            for (c, m) in self.members.iter_mut().enumerate() {
                let plane =
                    std::slice::from_raw_parts_mut(*(*f).extended_data.add(c) as *mut f32, n);
                for (i, v) in plane.iter_mut().enumerate() {
                    *v = if i < m.queue.len() { m.queue[i] } else { 0.0 };
                }
                let take = n.min(m.queue.len());
                m.queue.drain(..take);
            }
        }
        self.merged_samples += n as i64;
        Ok(())
    }

    fn flush_decoders(&mut self) {
        for m in &mut self.members {
            m.dec.flush();
            m.eof = false;
            m.queue.clear();
        }
        self.eof = false;
        self.start = None;
        self.merged_samples = 0;
        self.out.reset();
    }

    fn view(&self) -> FrameView<'_> {
        FrameView::Audio(self.out.view())
    }
}

/// Appends a decoded mono frame's samples to `queue` as floats.
fn mono_samples(f: &frame::Audio, queue: &mut VecDeque<f32>) -> Result<(), String> {
    use ffi::AVSampleFormat::*;
    // SAFETY: a decoded frame.
    let f = unsafe { &*f.as_ptr() };
    let n = f.nb_samples.max(0) as usize;
    let p = f.extended_data;
    // SAFETY: a mono frame has one plane of `n` samples in its format
    // (packed and planar are the same for one channel).
    unsafe {
        let base = *p;
        match std::mem::transmute::<c_int, ffi::AVSampleFormat>(f.format) {
            AV_SAMPLE_FMT_U8 | AV_SAMPLE_FMT_U8P => queue.extend(
                std::slice::from_raw_parts(base, n)
                    .iter()
                    .map(|&v| (f32::from(v) - 128.0) / 128.0),
            ),
            AV_SAMPLE_FMT_S16 | AV_SAMPLE_FMT_S16P => queue.extend(
                std::slice::from_raw_parts(base as *const i16, n)
                    .iter()
                    .map(|&v| f32::from(v) / 32768.0),
            ),
            AV_SAMPLE_FMT_S32 | AV_SAMPLE_FMT_S32P => queue.extend(
                std::slice::from_raw_parts(base as *const i32, n)
                    .iter()
                    .map(|&v| (f64::from(v) / 2147483648.0) as f32),
            ),
            AV_SAMPLE_FMT_FLT | AV_SAMPLE_FMT_FLTP => {
                queue.extend(std::slice::from_raw_parts(base as *const f32, n))
            }
            AV_SAMPLE_FMT_DBL | AV_SAMPLE_FMT_DBLP => queue.extend(
                std::slice::from_raw_parts(base as *const f64, n)
                    .iter()
                    .map(|&v| v as f32),
            ),
            AV_SAMPLE_FMT_S64 | AV_SAMPLE_FMT_S64P => queue.extend(
                std::slice::from_raw_parts(base as *const i64, n)
                    .iter()
                    .map(|&v| (v as f64 / 9223372036854775808.0) as f32),
            ),
            _ => {
                return Err(format!(
                    "a mono audio track decoded to sample format {} (not one to merge)",
                    f.format
                ))
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Ready {
    Video,
    Audio,
}

/// A media file opened for decoding: the best video and audio streams that
/// the host asked for, decoded in demux order.
pub struct FileDecoder {
    path: String,
    input: format::context::Input,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    demux_eof: bool,
    audio_flushed: bool,
    /// The container's start, in microseconds, which seeks are relative to.
    start_us: i64,
}

fn field_order(f: ffi::AVFieldOrder) -> u32 {
    use ffi::AVFieldOrder::*;
    match f {
        AV_FIELD_PROGRESSIVE => 1,
        AV_FIELD_TT | AV_FIELD_BB | AV_FIELD_TB | AV_FIELD_BT => 2,
        _ => 0,
    }
}

/// Scan type from a DNxHD/DNxHR frame header: byte 5, bit 1 is set for
/// interlaced pictures, as FFmpeg's dnxhddec reads it. `None` if the packet
/// does not start with a header prefix FFmpeg accepts (dnxhddata.h: DNxHD
/// `00 00 02 80 01`/`02`, DNxHR `00 00 <data offset> 03`; byte 5 aside).
fn dnxhd_scan(frame: &[u8]) -> Option<u32> {
    let h = frame.get(..6)?;
    let offset = u16::from_be_bytes([h[2], h[3]]);
    let dnxhd = h[..4] == [0x00, 0x00, 0x02, 0x80] && matches!(h[4], 0x01 | 0x02);
    let dnxhr =
        h[..2] == [0, 0] && h[4] == 0x03 && (0x0280..=0x2170).contains(&offset) && offset % 4 == 0;
    if !dnxhd && !dnxhr {
        return None;
    }
    Some(if h[5] & 2 != 0 { 2 } else { 1 })
}

/// The scan type of a DNxHD stream, from its first packet: QuickTime files
/// do not say it (movenc writes no `fiel` box for DNxHD, leaving it to the
/// frame headers), so the container's field order is unknown.
fn dnxhd_file_scan(path: &str, index: usize) -> Option<u32> {
    let mut input = format::input(&path).ok()?;
    for (st, pkt) in input.packets().take(64) {
        if st.index() == index {
            return dnxhd_scan(pkt.data()?);
        }
    }
    None
}

impl FileDecoder {
    fn describe_video(st: &ffmpeg_next::Stream<'_>, info: &mut abi::MediaInfo) {
        // SAFETY: a stream of an open input; codecpar is always allocated.
        let (s, par) = unsafe { (&*st.as_ptr(), &*(*st.as_ptr()).codecpar) };
        info.has_video = 1;
        info.video_codec = name(&codec_name(par.codec_id));
        info.video_profile = name(&profile_name(par.codec_id, par.profile));
        info.width = par.width.max(0) as u32;
        info.height = par.height.max(0) as u32;
        info.pix_fmt = pix_from_av(par.format);
        info.pix_fmt_name = name(&pix_name(par.format));
        let rate = if s.avg_frame_rate.num > 0 && s.avg_frame_rate.den > 0 {
            s.avg_frame_rate
        } else {
            s.r_frame_rate
        };
        info.frame_rate = abi_rational(rate);
        info.n_frames = if s.nb_frames > 0 { s.nb_frames } else { -1 };
        info.video_duration_us = to_us(s.duration, s.time_base);
        info.color = abi::ColorTags {
            primaries: par.color_primaries as u32,
            transfer: par.color_trc as u32,
            matrix: par.color_space as u32,
            range: par.color_range as u32,
        };
        info.field_order = field_order(par.field_order);
        // FF_LEVEL_UNKNOWN is -99; 0 is "unknown" across the ABI.
        info.video_level = par.level.max(0);
    }

    fn describe_audio(st: &ffmpeg_next::Stream<'_>, info: &mut abi::MediaInfo) {
        // SAFETY: as above.
        let (s, par) = unsafe { (&*st.as_ptr(), &*(*st.as_ptr()).codecpar) };
        info.has_audio = 1;
        info.audio_codec = name(&codec_name(par.codec_id));
        info.audio_profile = name(&profile_name(par.codec_id, par.profile));
        info.sample_rate = par.sample_rate.max(0) as u32;
        info.channels = par.ch_layout.nb_channels.max(par.channels).max(0) as u32;
        info.audio_duration_us = to_us(s.duration, s.time_base);
        // PCM carries its depth in the sample description; lossy codecs
        // have none (both fields 0), which is "unknown" across the ABI.
        info.audio_bits = if par.bits_per_raw_sample > 0 {
            par.bits_per_raw_sample as u32
        } else {
            par.bits_per_coded_sample.max(0) as u32
        };
        if par.ch_layout.order == ffi::AVChannelOrder::AV_CHANNEL_ORDER_NATIVE {
            // SAFETY: `mask` is the member in use for the native order.
            info.audio_channel_layout = unsafe { par.ch_layout.u.mask };
        }
    }

    /// The start timecode: MOV copies its tmcd track's onto the video
    /// stream; MXF and others put it in the container's metadata; a data
    /// stream (tmcd) may be the only one that has it.
    fn start_timecode(input: &format::context::Input, video: Option<usize>) -> Option<String> {
        let from_stream = |i: usize| {
            input
                .stream(i)
                .and_then(|st| st.metadata().get("timecode").map(str::to_owned))
        };
        video
            .and_then(from_stream)
            .or_else(|| input.metadata().get("timecode").map(str::to_owned))
            .or_else(|| (0..input.nb_streams() as usize).find_map(from_stream))
    }

    fn open_track(
        path: &str,
        st: &ffmpeg_next::Stream<'_>,
        threads: u32,
    ) -> Result<(decoder::Opened, ffi::AVRational), String> {
        // SAFETY: as above.
        let (tb, id) = unsafe {
            (
                (*st.as_ptr()).time_base,
                (*(*st.as_ptr()).codecpar).codec_id,
            )
        };
        let what = format!("{path}, stream {} ({})", st.index(), codec_name(id));
        let mut ctx = codec::Context::from_parameters(st.parameters())
            .map_err(|e| format!("{what}: {}", av_err(e)))?;
        // SAFETY: a fresh context; decoders read pkt_timebase for skip
        // samples and timestamp guessing.
        unsafe { (*ctx.as_mut_ptr()).pkt_timebase = tb };
        // SAFETY: codecs are static.
        let dec = unsafe { ffi::avcodec_find_decoder(id) };
        if dec.is_null() {
            return Err(format!("{what}: this FFmpeg build has no decoder for it"));
        }
        Ok((open_decoder(ctx, dec, threads, &what)?, tb))
    }

    /// The next decoded item, without borrowing it yet.
    fn step(&mut self) -> Result<Option<Ready>, String> {
        loop {
            if let Some(v) = self.video.as_mut() {
                if !v.eof && v.pull()? {
                    return Ok(Some(Ready::Video));
                }
            }
            if let Some(a) = self.audio.as_mut() {
                if !a.eof && a.pull()? {
                    return Ok(Some(Ready::Audio));
                }
            }
            if self.demux_eof {
                // Both decoders are drained (after EOF they never ask for
                // more): what is left is the resampler's tail.
                if let Some(a) = self.audio.as_mut() {
                    if !self.audio_flushed {
                        self.audio_flushed = true;
                        if a.out.flush()? > 0 {
                            return Ok(Some(Ready::Audio));
                        }
                    }
                }
                return Ok(None);
            }
            self.read_packet()?;
        }
    }

    /// Seeks to `at_us` (container time) or before, and resets decoding.
    fn seek_to(&mut self, at_us: i64) -> Result<(), String> {
        clear_last_error();
        // SAFETY: an open input; -1 selects AV_TIME_BASE (microsecond) units.
        let r = unsafe {
            ffi::av_seek_frame(
                self.input.as_mut_ptr(),
                -1,
                at_us,
                ffi::AVSEEK_FLAG_BACKWARD,
            )
        };
        if r < 0 {
            return Err(format!(
                "seeking {} to {} µs: {}",
                self.path,
                at_us - self.start_us,
                av_code(r)
            ));
        }
        if let Some(v) = self.video.as_mut() {
            v.dec.flush();
            v.eof = false;
        }
        if let Some(a) = self.audio.as_mut() {
            a.flush_decoders();
        }
        self.demux_eof = false;
        self.audio_flushed = false;
        Ok(())
    }

    /// Decodes up to the first video frame; its time in container
    /// microseconds, `None` at the end or when it has no timestamp.
    fn peek_video_us(&mut self) -> Result<Option<i64>, String> {
        loop {
            match self.step()? {
                Some(Ready::Video) => {
                    let v = self.video.as_ref().expect("video track");
                    let pts = v.out.pts();
                    return Ok((pts != ffi::AV_NOPTS_VALUE).then(|| to_us(pts, v.tb)));
                }
                Some(Ready::Audio) => {}
                None => return Ok(None),
            }
        }
    }

    fn read_packet(&mut self) -> Result<(), String> {
        let mut packet = Packet::empty();
        match packet.read(&mut self.input) {
            Ok(()) => {
                let idx = packet.stream();
                let what = &self.path;
                if let Some(v) = self.video.as_mut().filter(|v| v.index == idx) {
                    if let Sent::Full = send(&mut v.dec, &packet, what)? {
                        return Err(format!(
                            "{what}: the video decoder refused input it should take"
                        ));
                    }
                } else if let Some((a, m)) =
                    self.audio.as_mut().and_then(|a| a.has(idx).map(|m| (a, m)))
                {
                    if let Sent::Full = send(&mut a.members[m].dec, &packet, what)? {
                        return Err(format!(
                            "{what}: the audio decoder refused input it should take"
                        ));
                    }
                }
                Ok(())
            }
            Err(ffmpeg_next::Error::Eof) => {
                self.demux_eof = true;
                // Draining can only fail if already draining, which is fine.
                if let Some(v) = self.video.as_mut() {
                    let _ = v.dec.send_eof();
                }
                if let Some(a) = self.audio.as_mut() {
                    for m in &mut a.members {
                        let _ = m.dec.send_eof();
                    }
                }
                Ok(())
            }
            Err(e) => Err(format!("reading {}: {}", self.path, av_err(e))),
        }
    }
}

impl plugin::FileDecoder for FileDecoder {
    fn open(path: &str, cfg: &abi::DecoderConfig) -> PResult<(Self, abi::MediaInfo)> {
        crate::ensure_init();
        clear_last_error();
        let mut input =
            format::input(&path).map_err(|e| format!("cannot open {path}: {}", av_err(e)))?;
        let mut info = abi::MediaInfo::EMPTY;
        info.container = name(input.format().name());
        let duration = input.duration();
        info.duration_us = if duration == ffi::AV_NOPTS_VALUE || duration < 0 {
            -1
        } else {
            duration
        };
        info.bit_rate = input.bit_rate();
        // SAFETY: an open input.
        let start = unsafe { (*input.as_ptr()).start_time };
        let start_us = if start == ffi::AV_NOPTS_VALUE {
            0
        } else {
            start
        };

        // A cover picture is a "video" stream of one frame: not programme video.
        let vbest = input
            .streams()
            .best(ff_media::Type::Video)
            .filter(|s| s.disposition().bits() & ffi::AV_DISPOSITION_ATTACHED_PIC == 0)
            .map(|s| s.index());
        let abest = input
            .streams()
            .best(ff_media::Type::Audio)
            .map(|s| s.index());

        if let Some(tc) = Self::start_timecode(&input, vbest) {
            info.set_start_timecode(&tc);
        }
        let mut video = None;
        let mut audio = None;
        if let Some(i) = vbest {
            let st = input.stream(i).expect("index from best()");
            Self::describe_video(&st, &mut info);
            // SAFETY: codecpar is always allocated for an open input's stream.
            let id = unsafe { (*(*st.as_ptr()).codecpar).codec_id };
            if info.field_order == 0 && id == ffi::AVCodecID::AV_CODEC_ID_DNXHD {
                info.field_order = dnxhd_file_scan(path, i).unwrap_or(0);
            }
            if cfg.want & media::VIDEO != 0 {
                let (dec, tb) = Self::open_track(path, &st, cfg.threads)?;
                video = Some(VideoTrack {
                    index: i,
                    dec,
                    tb,
                    frame: frame::Video::empty(),
                    out: VideoOut::new(cfg.video_pix_fmt)?,
                    eof: false,
                });
            }
        }
        if let Some(i) = abest {
            let st = input.stream(i).expect("index from best()");
            Self::describe_audio(&st, &mut info);
            let tracks = mono_tracks(&input, i);
            if tracks.len() > 1 {
                info.channels = tracks.len() as u32;
                info.audio_tracks = tracks.len() as u32;
                info.audio_channel_layout = 0;
            }
            if cfg.want & media::AUDIO != 0 {
                check_audio_request(cfg)?;
                let mut members = Vec::with_capacity(tracks.len());
                let mut tb = ffi::AVRational { num: 1, den: 1 };
                for &t in &tracks {
                    let st = input.stream(t).expect("an index of this input");
                    let (dec, track_tb) = Self::open_track(path, &st, cfg.threads)?;
                    if t == tracks[0] {
                        tb = track_tb;
                    }
                    members.push(Member {
                        index: t,
                        dec,
                        frame: frame::Audio::empty(),
                        queue: VecDeque::new(),
                        eof: false,
                    });
                }
                // The demuxer already marks priming samples for the decoder
                // to drop (MP4 edit lists), so none are skipped here.
                let out = AudioOut::new(cfg.audio_sample_rate, cfg.audio_channels, 0);
                audio = Some(AudioTrack::new(members, tb, info.sample_rate as i32, out));
            }
        }
        if video.is_none() && audio.is_none() {
            return Err(format!(
                "{path} has no {} stream to decode",
                match cfg.want & media::ANY {
                    media::VIDEO => "video",
                    media::AUDIO => "audio",
                    0 => "requested (DecoderConfig.want is 0)",
                    _ => "video or audio",
                }
            ));
        }
        // Streams nobody decodes are not even demuxed into packets.
        let mut used: Vec<usize> = video.as_ref().map(|v| v.index).into_iter().collect();
        if let Some(a) = &audio {
            used.extend(a.members.iter().map(|m| m.index));
        }
        for mut st in input.streams_mut() {
            if !used.contains(&st.index()) {
                // SAFETY: a stream of an open input.
                unsafe { (*st.as_mut_ptr()).discard = ffi::AVDiscard::AVDISCARD_ALL };
            }
        }
        Ok((
            FileDecoder {
                path: path.to_owned(),
                input,
                video,
                audio,
                demux_eof: false,
                audio_flushed: false,
                start_us,
            },
            info,
        ))
    }

    fn seek(&mut self, time_us: i64) -> PResult<()> {
        let target = time_us.saturating_add(self.start_us);
        if self.video.is_none() {
            return self.seek_to(target);
        }
        // Containers without an index (MPEG-TS) seek by timestamp search,
        // which can land after the key frame that the target needs, so the
        // decoder's first picture comes late. Look at where video really
        // starts and step back until it is at or before the target, then
        // seek there once more so nothing looked at is lost.
        let mut back = 0i64;
        loop {
            let at = target.saturating_sub(back).max(self.start_us);
            self.seek_to(at)?;
            match self.peek_video_us()? {
                Some(first) if first > target && at > self.start_us => {
                    back = if back == 0 {
                        1_000_000
                    } else {
                        back.saturating_mul(2)
                    };
                }
                _ => return self.seek_to(at),
            }
        }
    }

    fn next(&mut self) -> PResult<Option<FrameView<'_>>> {
        Ok(match self.step()? {
            Some(Ready::Video) => self.video.as_ref().map(VideoTrack::view),
            Some(Ready::Audio) => self.audio.as_ref().map(AudioTrack::view),
            None => None,
        })
    }
}

/// The audio streams that make one programme with `best`: when `best` is
/// mono and every audio stream of the file is a mono track of the same
/// codec and rate (MXF OP1a and broadcast MOV carry one track per channel),
/// all of them in stream order; otherwise `best` alone.
fn mono_tracks(input: &format::context::Input, best: usize) -> Vec<usize> {
    // SAFETY: streams of an open input; codecpar is always allocated.
    let facts = |st: &ffmpeg_next::Stream<'_>| unsafe {
        let par = &*(*st.as_ptr()).codecpar;
        (
            par.codec_id,
            par.sample_rate,
            par.ch_layout.nb_channels.max(par.channels),
        )
    };
    let Some(first) = input.stream(best) else {
        return vec![best];
    };
    let (id, rate, channels) = facts(&first);
    if channels != 1 {
        return vec![best];
    }
    let audio: Vec<_> = input
        .streams()
        .filter(|s| s.parameters().medium() == ff_media::Type::Audio)
        .collect();
    if audio.len() > 1 && audio.iter().all(|s| facts(s) == (id, rate, 1)) {
        audio.iter().map(|s| s.index()).collect()
    } else {
        vec![best]
    }
}

fn check_audio_request(cfg: &abi::DecoderConfig) -> Result<(), String> {
    if cfg.audio_channels > 64 {
        return Err(format!(
            "audio_channels {} is not a channel count FFmpeg can lay out (0 keeps the native layout)",
            cfg.audio_channels
        ));
    }
    if cfg.audio_sample_rate > 768_000 {
        return Err(format!(
            "audio_sample_rate {} Hz is beyond what swresample handles (0 keeps the native rate)",
            cfg.audio_sample_rate
        ));
    }
    Ok(())
}

/// Decodes the packets of one stream, as described by an encoder's
/// [`StreamInfo`].
pub struct StreamDecoder {
    codec: String,
    dec: decoder::Opened,
    tb: ffi::AVRational,
    video: Option<(frame::Video, VideoOut)>,
    audio: Option<(frame::Audio, AudioOut)>,
    /// Packets the decoder could not take yet (it had frames to give first).
    pending: VecDeque<Packet>,
    eof_requested: bool,
    eof_sent: bool,
    flushed: bool,
}

impl StreamDecoder {
    /// Sends what is pending; returns whether anything was sent.
    fn pump(&mut self) -> Result<bool, String> {
        let mut progressed = false;
        while let Some(p) = self.pending.front() {
            match send(&mut self.dec, p, &self.codec)? {
                Sent::Taken => {
                    self.pending.pop_front();
                    progressed = true;
                }
                Sent::Full => break,
            }
        }
        if self.pending.is_empty() && self.eof_requested && !self.eof_sent {
            // Draining can only fail if already draining, which is fine.
            let _ = self.dec.send_eof();
            self.eof_sent = true;
            progressed = true;
        }
        Ok(progressed)
    }

    fn step(&mut self) -> Result<Result<Ready, i32>, String> {
        loop {
            let got = match (&mut self.video, &mut self.audio) {
                (Some((f, _)), _) => receive(&mut self.dec, f)?,
                (_, Some((f, _))) => receive(&mut self.dec, f)?,
                _ => unreachable!("a stream decoder is video or audio"),
            };
            match got {
                Got::Frame => {
                    if let Some((f, out)) = self.video.as_mut() {
                        out.process(f, abi_rational(self.tb))?;
                        return Ok(Ok(Ready::Video));
                    }
                    if let Some((f, out)) = self.audio.as_mut() {
                        if out.push(f, self.tb)? > 0 {
                            return Ok(Ok(Ready::Audio));
                        }
                    }
                }
                Got::Again => {
                    let waiting =
                        !self.pending.is_empty() || (self.eof_requested && !self.eof_sent);
                    if !waiting {
                        return Ok(Err(status::NEED_MORE));
                    }
                    if !self.pump()? {
                        return Err(format!(
                            "{}: the decoder takes neither input nor gives output",
                            self.codec
                        ));
                    }
                }
                Got::Eof => {
                    if let Some((_, out)) = self.audio.as_mut() {
                        if !self.flushed {
                            self.flushed = true;
                            if out.flush()? > 0 {
                                return Ok(Ok(Ready::Audio));
                            }
                        }
                    }
                    return Ok(Err(status::EOF));
                }
            }
        }
    }
}

impl plugin::StreamDecoder for StreamDecoder {
    fn open(params: &StreamInfo, cfg: &abi::DecoderConfig) -> PResult<Self> {
        crate::ensure_init();
        let codec = find_decoder(&params.codec).ok_or_else(|| {
            format!(
                "this FFmpeg build has no decoder for codec `{}` (FFmpeg codec names: h264, hevc, aac, prores, …)",
                params.codec
            )
        })?;
        // SAFETY: static codec.
        let kind = unsafe { (*codec).type_ };
        let m = match kind {
            ffi::AVMediaType::AVMEDIA_TYPE_VIDEO => media::VIDEO,
            ffi::AVMediaType::AVMEDIA_TYPE_AUDIO => media::AUDIO,
            _ => {
                return Err(format!(
                    "`{}` is neither a video nor an audio codec",
                    params.codec
                ))
            }
        };
        if params.media != 0 && params.media != m {
            return Err(format!(
                "stream params say media {} but `{}` is a {} codec",
                params.media,
                params.codec,
                if m == media::VIDEO { "video" } else { "audio" }
            ));
        }
        let what = format!("{} stream decoder", params.codec);
        // SAFETY: allocation with a static codec; checked for null.
        let raw = unsafe { ffi::avcodec_alloc_context3(codec) };
        if raw.is_null() {
            return Err(format!("{what}: out of memory"));
        }
        // SAFETY: a fresh context we own.
        let ctx = unsafe { codec::Context::wrap(raw, None) };
        let tb = ffi::AVRational {
            num: params.time_base.num,
            den: params.time_base.den,
        };
        let (extradata, extradata_len) = av_extradata(&params.extradata)?;
        // SAFETY: a fresh, unopened context; extradata is av_malloc'd and
        // owned by the context from here on.
        unsafe {
            (*raw).extradata = extradata;
            (*raw).extradata_size = extradata_len;
            if tb.num > 0 && tb.den > 0 {
                (*raw).pkt_timebase = tb;
            }
            let id = (*codec).id;
            if let Some(profile) = profile_id(id, &params.profile) {
                (*raw).profile = profile;
                // What a demuxer would give the decoder: ProRes decodes at
                // the depth its fourcc names.
                if id == ffi::AVCodecID::AV_CODEC_ID_PRORES {
                    (*raw).codec_tag = prores_tag(profile).unwrap_or(0);
                }
            }
            if m == media::VIDEO {
                (*raw).width = params.width as c_int;
                (*raw).height = params.height as c_int;
                if params.frame_rate.num > 0 && params.frame_rate.den > 0 {
                    (*raw).framerate = ffi::AVRational {
                        num: params.frame_rate.num,
                        den: params.frame_rate.den,
                    };
                }
            } else {
                check_audio_request(cfg)?;
                (*raw).sample_rate = params.sample_rate as c_int;
                if params.channels > 0 {
                    let l = Layout::default_for(params.channels);
                    ffi::av_channel_layout_copy(&mut (*raw).ch_layout, &l.0);
                }
            }
        }
        let dec = open_decoder(ctx, codec, cfg.threads, &what)?;
        let (video, audio) = if m == media::VIDEO {
            (
                Some((frame::Video::empty(), VideoOut::new(cfg.video_pix_fmt)?)),
                None,
            )
        } else {
            // Priming samples are part of the stream but not of the
            // programme; a container would carry this as an edit list.
            let skip = params.initial_padding as usize;
            (
                None,
                Some((
                    frame::Audio::empty(),
                    AudioOut::new(cfg.audio_sample_rate, cfg.audio_channels, skip),
                )),
            )
        };
        Ok(StreamDecoder {
            codec: params.codec.clone(),
            dec,
            tb,
            video,
            audio,
            pending: VecDeque::new(),
            eof_requested: false,
            eof_sent: false,
            flushed: false,
        })
    }

    fn send(&mut self, pkt: Option<&PacketView<'_>>) -> PResult<()> {
        let Some(p) = pkt else {
            self.eof_requested = true;
            self.pump()?;
            return Ok(());
        };
        if self.eof_requested {
            return Err(format!(
                "{}: a packet was sent after the drain request",
                self.codec
            ));
        }
        let ptb = ffi::AVRational {
            num: p.time_base.num,
            den: p.time_base.den,
        };
        if self.tb.num <= 0 || self.tb.den <= 0 {
            // No usable time base in the params: the packets' own is it.
            self.tb = ptb;
            // SAFETY: an open decoder context; the field is read per packet.
            unsafe { (*self.dec.as_mut_ptr()).pkt_timebase = ptb };
        }
        if p.data.is_empty() {
            // FFmpeg reads an empty packet as "drain"; that must be explicit.
            return Err(format!(
                "{}: an empty packet was sent (send no packet to drain)",
                self.codec
            ));
        }
        let mut packet = Packet::copy(p.data);
        packet.set_pts(Some(rescale(p.pts, ptb, self.tb)));
        packet.set_dts(Some(rescale(p.dts, ptb, self.tb)));
        packet.set_duration(rescale(p.duration, ptb, self.tb));
        if p.key {
            packet.set_flags(ffmpeg_next::packet::Flags::KEY);
        }
        self.pending.push_back(packet);
        self.pump()?;
        Ok(())
    }

    fn receive(&mut self) -> PResult<Result<FrameView<'_>, i32>> {
        Ok(match self.step()? {
            Ok(Ready::Video) => {
                let (f, out) = self.video.as_ref().expect("video decoder");
                Ok(FrameView::Video(out.view(f)))
            }
            Ok(Ready::Audio) => {
                let (_, out) = self.audio.as_ref().expect("audio decoder");
                Ok(FrameView::Audio(out.view()))
            }
            Err(s) => Err(s),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dnxhd_headers_tell_the_scan() {
        use super::dnxhd_scan;
        assert_eq!(dnxhd_scan(&[0, 0, 2, 0x80, 1, 0x00, 0x38]), Some(1));
        assert_eq!(dnxhd_scan(&[0, 0, 2, 0x80, 1, 0x03, 0x38]), Some(2));
        // DNxHR: a data offset, then 03.
        assert_eq!(dnxhd_scan(&[0, 0, 2, 0x80, 3, 0x00, 0x38]), Some(1));
        assert_eq!(dnxhd_scan(&[0, 0, 2, 0x82, 3, 0x00, 0x38]), None);
        assert_eq!(dnxhd_scan(&[0, 0, 1, 0xb3, 0, 0]), None);
        assert_eq!(dnxhd_scan(&[0, 0, 2]), None);
    }
}
