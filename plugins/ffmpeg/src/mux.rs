//! Writing MP4, MOV, MXF and Matroska through libavformat.

use crate::caps::{mux_options, CONTAINERS, FIELD_ORDER_OPTION, VIDEO_TAG_OPTION};
use crate::ffi_util::{
    av_code, av_color, av_err, av_extradata, av_rational, codec_id_by_name, codec_name, fourcc,
    is_positive, pix_to_av, profile_id, prores_tag, Layout,
};
use crate::ffmpeg_log::clear_last_error;
use crate::options::{self, AvSettings};
use deliver_plugin_api::abi::media;
use deliver_plugin_api::plugin::{self, PResult, PacketView, StreamInfo};
use ffmpeg_next::{ffi, format, Packet};
use std::ffi::c_int;

struct MuxStream {
    /// What the packets' time base is when they carry none.
    requested: ffi::AVRational,
    /// The muxer's own time base, known after the header is written.
    actual: ffi::AVRational,
}

/// An output file being written.
pub struct Muxer {
    path: String,
    container: String,
    out: format::context::Output,
    settings: AvSettings,
    /// The video sample entry's fourcc asked for (`video_tag`).
    video_tag: Option<String>,
    /// The video stream's field order (`field_order`), progressive unless
    /// asked.
    field_order: ffi::AVFieldOrder,
    streams: Vec<MuxStream>,
    header: bool,
    finished: bool,
}

impl Muxer {
    fn ctx(&mut self) -> *mut ffi::AVFormatContext {
        // SAFETY: the context lives as long as `self.out`.
        unsafe { self.out.as_mut_ptr() }
    }
}

impl plugin::Muxer for Muxer {
    fn open(path: &str, container: &str, options: &str) -> PResult<Self> {
        crate::ensure_init();
        clear_last_error();
        if !CONTAINERS.contains(&container) {
            return Err(format!(
                "cannot write {path}: container `{container}` is not offered; accepted: {}",
                CONTAINERS.join(", ")
            ));
        }
        let mut settings = options::parse(
            options,
            mux_options(container),
            &format!("{container} muxer options"),
        )
        .map_err(|e| format!("{path}: {e}"))?;
        let video_tag = settings.take(VIDEO_TAG_OPTION);
        let field_order = match settings.take(FIELD_ORDER_OPTION).as_deref() {
            Some("tt") => ffi::AVFieldOrder::AV_FIELD_TT,
            Some("bb") => ffi::AVFieldOrder::AV_FIELD_BB,
            _ => ffi::AVFieldOrder::AV_FIELD_PROGRESSIVE,
        };
        let out = format::output_as(&path, container)
            .map_err(|e| format!("cannot create {path} as {container}: {}", av_err(e)))?;
        Ok(Muxer {
            path: path.to_owned(),
            container: container.to_owned(),
            out,
            settings,
            video_tag,
            field_order,
            streams: Vec::new(),
            header: false,
            finished: false,
        })
    }

    fn add_stream(&mut self, p: &StreamInfo) -> PResult<u32> {
        let path = self.path.clone();
        if self.header {
            return Err(format!(
                "{path}: streams must be added before the header is written"
            ));
        }
        let id = codec_id_by_name(&p.codec)
            .ok_or_else(|| format!("{path}: FFmpeg does not know codec `{}`", p.codec))?;
        let ctx = self.ctx();
        // SAFETY: an output context; oformat is set by output_as.
        let fits =
            unsafe { ffi::avformat_query_codec((*ctx).oformat, id, ffi::FF_COMPLIANCE_NORMAL) };
        if fits == 0 {
            return Err(format!(
                "{path}: a {} file cannot carry {} ({})",
                self.container,
                codec_name(id),
                p.codec
            ));
        }
        if !is_positive(p.time_base) {
            return Err(format!(
                "{path}: stream time_base {}/{} must have a positive numerator and denominator",
                p.time_base.num, p.time_base.den
            ));
        }
        if p.media != media::VIDEO && p.media != media::AUDIO {
            return Err(format!(
                "{path}: stream media must be {} (video) or {} (audio), not {}",
                media::VIDEO,
                media::AUDIO,
                p.media
            ));
        }
        // Everything that can be refused is checked before the stream exists,
        // so a refused stream leaves no half-made stream behind.
        let color = av_color(p.color).map_err(|e| format!("{path}: {e}"))?;
        let profile = profile_id(id, &p.profile);
        let tag = if p.media == media::VIDEO {
            match &self.video_tag {
                Some(t) => fourcc(t),
                None => default_video_tag(&self.container, id, profile),
            }
        } else {
            0
        };
        let (extradata, extradata_len) =
            av_extradata(&p.extradata).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: an output context before its header; a null codec is allowed.
        let st = unsafe { ffi::avformat_new_stream(ctx, std::ptr::null()) };
        if st.is_null() {
            // SAFETY: our own allocation, not yet handed over.
            unsafe { ffi::av_free(extradata as *mut _) };
            return Err(format!("{path}: cannot add a stream (out of memory)"));
        }
        let tb = av_rational(p.time_base);
        // SAFETY: a new stream; codecpar is allocated with it and takes
        // ownership of the av_malloc'd extradata.
        unsafe {
            let par = &mut *(*st).codecpar;
            par.codec_id = id;
            par.extradata = extradata;
            par.extradata_size = extradata_len;
            par.bit_rate = p.bit_rate.max(0);
            (*st).time_base = tb;
            if let Some(profile) = profile {
                par.profile = profile;
            }
            if p.media == media::VIDEO {
                par.codec_type = ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
                par.codec_tag = tag;
                par.width = p.width as c_int;
                par.height = p.height as c_int;
                par.format = pix_to_av(p.pix_fmt).map_or(-1, |f| f as c_int);
                // QuickTime's sample description depth: 32 says the picture
                // carries alpha (Apple's ProRes 4444 with alpha writes it;
                // the MOV muxer writes 24 when this is unset).
                if deliver_plugin_api::abi::pix::layout(p.pix_fmt).is_some_and(|l| l.planes == 4) {
                    par.bits_per_coded_sample = 32;
                }
                par.sample_aspect_ratio = ffi::AVRational { num: 1, den: 1 };
                par.field_order = self.field_order;
                par.color_primaries = color.primaries;
                par.color_trc = color.transfer;
                par.color_space = color.matrix;
                par.color_range = color.range;
                if is_positive(p.frame_rate) {
                    (*st).avg_frame_rate = av_rational(p.frame_rate);
                }
            } else {
                par.codec_type = ffi::AVMediaType::AVMEDIA_TYPE_AUDIO;
                par.sample_rate = p.sample_rate as c_int;
                let l = Layout::default_for(p.channels.max(1));
                ffi::av_channel_layout_copy(&mut par.ch_layout, &l.0);
                par.frame_size = p.frame_size as c_int;
                // PCM in MOV needs the sample size; 0 for compressed codecs.
                par.bits_per_coded_sample = ffi::av_get_bits_per_sample(id);
                par.initial_padding = p.initial_padding as c_int;
            }
        }
        self.streams.push(MuxStream {
            requested: tb,
            actual: tb,
        });
        Ok((self.streams.len() - 1) as u32)
    }

    fn write_header(&mut self) -> PResult<()> {
        if self.header {
            return Err(format!("{}: the header is already written", self.path));
        }
        if self.streams.is_empty() {
            return Err(format!(
                "{}: no streams were added before the header",
                self.path
            ));
        }
        clear_last_error();
        let ctx = self.ctx();
        let mut dict = self.settings.to_dictionary();
        // SAFETY: the dictionary goes to FFmpeg and comes back with what it
        // did not use.
        let (r, leftover) = unsafe {
            let mut d = dict.disown();
            let r = ffi::avformat_write_header(ctx, &mut d);
            dict = ffmpeg_next::Dictionary::own(d);
            (r, dict)
        };
        if r < 0 {
            let tag = self
                .video_tag
                .as_ref()
                .map(|t| format!(" (video_tag = \"{t}\")"))
                .unwrap_or_default();
            return Err(format!(
                "writing the header of {}{tag}: {}",
                self.path,
                av_code(r)
            ));
        }
        self.header = true;
        let unused: Vec<String> = leftover.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !unused.is_empty() {
            return Err(format!(
                "{}: the {} muxer did not use the setting(s) {}",
                self.path,
                self.container,
                unused.join(", ")
            ));
        }
        // The muxer picks its own time bases (MP4 video gets a finer one).
        for (i, s) in self.streams.iter_mut().enumerate() {
            // SAFETY: stream i exists.
            s.actual = unsafe { (**(*ctx).streams.add(i)).time_base };
        }
        Ok(())
    }

    fn write_packet(&mut self, stream: u32, pkt: &PacketView<'_>) -> PResult<()> {
        if !self.header {
            return Err(format!("{}: write the header before packets", self.path));
        }
        if self.finished {
            return Err(format!("{}: the file is already finished", self.path));
        }
        let Some(s) = self.streams.get(stream as usize) else {
            return Err(format!(
                "{}: no stream {stream} (the file has {})",
                self.path,
                self.streams.len()
            ));
        };
        if pkt.data.is_empty() {
            return Err(format!(
                "{}: an empty packet for stream {stream}",
                self.path
            ));
        }
        let from = if is_positive(pkt.time_base) {
            av_rational(pkt.time_base)
        } else {
            s.requested
        };
        let mut packet = Packet::copy(pkt.data);
        packet.set_pts(Some(pkt.pts));
        packet.set_dts(Some(pkt.dts));
        packet.set_duration(pkt.duration);
        if pkt.key {
            packet.set_flags(ffmpeg_next::packet::Flags::KEY);
        }
        packet.set_stream(stream as usize);
        packet.rescale_ts(
            ffmpeg_next::Rational::from(from),
            ffmpeg_next::Rational::from(s.actual),
        );
        clear_last_error();
        packet.write_interleaved(&mut self.out).map_err(|e| {
            format!(
                "writing a packet to {} (stream {stream}, pts {}): {}",
                self.path,
                pkt.pts,
                av_err(e)
            )
        })
    }

    fn finish(&mut self) -> PResult<()> {
        if self.finished {
            return Ok(());
        }
        if !self.header {
            return Err(format!("{}: nothing was written (no header)", self.path));
        }
        clear_last_error();
        self.out
            .write_trailer()
            .map_err(|e| format!("finishing {}: {}", self.path, av_err(e)))?;
        let ctx = self.ctx();
        // SAFETY: closing our own output; the context's destructor then sees
        // a null pb and closes nothing.
        let r = unsafe { ffi::avio_closep(&mut (*ctx).pb) };
        if r < 0 {
            return Err(format!("closing {}: {}", self.path, av_code(r)));
        }
        self.finished = true;
        Ok(())
    }
}

/// The sample entry a QuickTime file needs where movenc cannot tell it from
/// the stream: ProRes names its profile in the fourcc, and prores_ks sets
/// it on its codec context, which does not reach the muxer through the
/// plugin ABI. Everything else is movenc's choice (DNxHR's `AVdh` it takes
/// from the stream's profile).
fn default_video_tag(container: &str, id: ffi::AVCodecID, profile: Option<c_int>) -> u32 {
    if container != "mov" || id != ffi::AVCodecID::AV_CODEC_ID_PRORES {
        return 0;
    }
    profile.and_then(prores_tag).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prores_profiles_name_their_sample_entries_in_mov_only() {
        let prores = ffi::AVCodecID::AV_CODEC_ID_PRORES;
        for (p, tag) in [
            (ffi::FF_PROFILE_PRORES_PROXY, "apco"),
            (ffi::FF_PROFILE_PRORES_LT, "apcs"),
            (ffi::FF_PROFILE_PRORES_STANDARD, "apcn"),
            (ffi::FF_PROFILE_PRORES_HQ, "apch"),
            (ffi::FF_PROFILE_PRORES_4444, "ap4h"),
            (ffi::FF_PROFILE_PRORES_XQ, "ap4x"),
        ] {
            assert_eq!(default_video_tag("mov", prores, Some(p)), fourcc(tag));
        }
        assert_eq!(default_video_tag("mov", prores, None), 0);
        assert_eq!(default_video_tag("mxf", prores, Some(3)), 0);
        assert_eq!(
            default_video_tag("mov", ffi::AVCodecID::AV_CODEC_ID_DNXHD, Some(3)),
            0
        );
    }
}
