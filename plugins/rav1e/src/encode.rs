//! The encoder: host frames in, AV1 temporal units out, one per frame.
//!
//! rav1e decides frame types and reorders internally, but hands out one
//! packet per shown frame in presentation order (its `input_frameno` only
//! increases), so a packet's dts is its pts. Each frame's pts travels
//! through rav1e as the frame's opaque value and comes back on its packet.

use crate::color::{sequence_colour, SequenceColour};
use crate::options::{self, Options, RateControl};
use deliver_plugin_api::abi::{self, media, pix, status};
use deliver_plugin_api::plugin::{
    self, AudioView, EncoderSettings, OwnedPacket, PResult, StreamInfo, VideoView,
};
use rav1e::config::{EncoderConfig, SpeedSettings};
use rav1e::data::{EncoderStatus, FrameParameters, FrameType, Packet};
use rav1e::prelude::{ChromaSampling, FrameTypeOverride, Opaque};
use rav1e::{Config, Context, Pixel};

/// Pixel formats this plugin takes, with their bit depth and subsampling.
pub const PIX_FMTS: &[(u32, usize, ChromaSampling)] = &[
    (pix::YUV420P, 8, ChromaSampling::Cs420),
    (pix::YUV420P10, 10, ChromaSampling::Cs420),
    (pix::YUV444P, 8, ChromaSampling::Cs444),
    (pix::YUV444P10, 10, ChromaSampling::Cs444),
];

/// The pixel format names of [`PIX_FMTS`], as capabilities list them.
pub fn pix_fmt_names() -> Vec<String> {
    PIX_FMTS
        .iter()
        .filter_map(|(f, _, _)| pix::name(*f))
        .map(str::to_owned)
        .collect()
}

/// rav1e's context for the stream's sample size.
enum Ctx {
    Eight(Context<u8>),
    High(Context<u16>),
}

/// One open AV1 encoder.
pub struct Encoder {
    ctx: Ctx,
    /// "av1 encoder (rav1e)", for messages.
    what: String,
    width: u32,
    height: u32,
    pix_fmt: u32,
    layout: pix::Layout,
    time_base: abi::Rational,
    /// One frame in `time_base` units.
    frame_duration: i64,
    last_pts: Option<i64>,
    /// The drain was requested: no more frames.
    draining: bool,
    /// rav1e said it has given every packet.
    finished: bool,
}

fn positive(r: abi::Rational) -> bool {
    r.num > 0 && r.den > 0
}

/// One frame at `rate` in units of `tb`, rounded, at least 1.
fn frame_duration(rate: abi::Rational, tb: abi::Rational) -> i64 {
    let num = i128::from(rate.den) * i128::from(tb.den);
    let den = i128::from(rate.num) * i128::from(tb.num);
    ((num * 2 + den) / (2 * den)).max(1) as i64
}

fn status_text(s: EncoderStatus) -> String {
    match s {
        EncoderStatus::Failure => "rav1e failed to encode (an internal error)".to_owned(),
        EncoderStatus::EnoughData => {
            "rav1e takes no more frames (after the drain, or past its frame limit)".to_owned()
        }
        other => format!("rav1e returned an unexpected status: {other}"),
    }
}

/// Builds rav1e's configuration from the host's settings and the options.
fn config(
    cfg: &EncoderSettings,
    o: &Options,
    depth: usize,
    cs: ChromaSampling,
    colour: &SequenceColour,
) -> PResult<Config> {
    let mut enc = EncoderConfig {
        width: cfg.width as usize,
        height: cfg.height as usize,
        // rav1e's time base is one frame's duration.
        time_base: rav1e::data::Rational::new(cfg.frame_rate.den as u64, cfg.frame_rate.num as u64),
        bit_depth: depth,
        chroma_sampling: cs,
        pixel_range: colour.range,
        color_description: colour.description,
        low_latency: o.low_latency,
        tiles: o.tiles,
        tile_cols: o.tile_cols,
        tile_rows: o.tile_rows,
        speed_settings: SpeedSettings::from_preset(o.speed),
        ..EncoderConfig::default()
    };
    enc.set_key_frame_interval(o.min_keyint, o.keyint);
    match o.rate {
        RateControl::Quantizer(q) => enc.quantizer = q as usize,
        RateControl::Bitrate {
            bits_per_s,
            min,
            max,
        } => {
            enc.bitrate = bits_per_s;
            enc.min_quantizer = min;
            enc.quantizer = max as usize;
        }
    }
    let threads = o.threads.unwrap_or(cfg.threads as usize);
    let c = Config::new().with_encoder_config(enc).with_threads(threads);
    c.validate()
        .map_err(|e| format!("rav1e refused the settings ({o}): {e}"))?;
    Ok(c)
}

impl Encoder {
    fn receive_one<T: Pixel>(ctx: &mut Context<T>) -> Result<Option<Packet<T>>, EncoderStatus> {
        loop {
            match ctx.receive_packet() {
                Ok(p) => return Ok(Some(p)),
                // A frame was coded but is not shown yet (a hidden
                // reference): go on to the next.
                Err(EncoderStatus::Encoded) => continue,
                Err(EncoderStatus::NeedMoreData) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn packet<T: Pixel>(&self, p: Packet<T>) -> PResult<OwnedPacket> {
        let pts = p
            .opaque
            .and_then(|o| o.downcast::<i64>().ok())
            .map(|b| *b)
            .ok_or_else(|| {
                format!(
                    "{}: rav1e returned frame {} without the timestamp it was sent with",
                    self.what, p.input_frameno
                )
            })?;
        Ok(OwnedPacket {
            data: p.data,
            pts,
            dts: pts,
            duration: self.frame_duration,
            time_base: self.time_base,
            key: p.frame_type == FrameType::KEY,
        })
    }

    /// Checks a frame against what the encoder was opened for.
    fn check(&self, v: &VideoView<'_>) -> PResult<()> {
        let what = &self.what;
        if (v.width, v.height, v.pix_fmt) != (self.width, self.height, self.pix_fmt) {
            return Err(format!(
                "{what} was opened for {}x{} {} but got a {}x{} {} frame",
                self.width,
                self.height,
                pix::name(self.pix_fmt).unwrap_or("?"),
                v.width,
                v.height,
                pix::name(v.pix_fmt).unwrap_or("unknown format")
            ));
        }
        if positive(v.time_base) && v.time_base != self.time_base {
            return Err(format!(
                "{what} was opened for time base {}/{} but got a frame in {}/{}",
                self.time_base.num, self.time_base.den, v.time_base.num, v.time_base.den
            ));
        }
        if v.pts == abi::NO_PTS {
            return Err(format!("{what}: a frame without a timestamp"));
        }
        if let Some(last) = self.last_pts.filter(|l| v.pts <= *l) {
            return Err(format!(
                "{what}: frame pts {} does not follow the previous frame's {last}; AV1 packets are in presentation order, so timestamps must increase",
                v.pts
            ));
        }
        if v.n_planes < self.layout.planes {
            return Err(format!(
                "{what}: frame has {} planes, {} expected",
                v.n_planes, self.layout.planes
            ));
        }
        Ok(())
    }

    fn send_frame<T: Pixel>(
        ctx: &mut Context<T>,
        v: &VideoView<'_>,
        l: pix::Layout,
        what: &str,
    ) -> PResult<()> {
        let mut frame = ctx.new_frame();
        for (i, plane) in frame.planes.iter_mut().enumerate().take(l.planes) {
            let (sx, sy) = if i == 0 {
                (0, 0)
            } else {
                (l.chroma_shift_x, l.chroma_shift_y)
            };
            let cols = (v.width as usize + (1 << sx) - 1) >> sx;
            let rows = (v.height as usize + (1 << sy) - 1) >> sy;
            let row_bytes = cols * l.bytes_per_sample;
            let (src, stride) = v.planes[i];
            if stride < row_bytes || src.len() < stride * (rows - 1) + row_bytes {
                return Err(format!(
                    "{what}: plane {i} has stride {stride} and {} bytes; {rows} rows of {row_bytes} bytes need more",
                    src.len()
                ));
            }
            // rav1e's planes are allocated to a multiple of 8 samples and
            // padded by rav1e itself past the picture.
            if plane.cfg.width < cols || plane.cfg.height < rows {
                return Err(format!(
                    "{what}: plane {i} is {cols}x{rows} but rav1e's is only {}x{}",
                    plane.cfg.width, plane.cfg.height
                ));
            }
            let dst_stride = plane.cfg.stride;
            let max = (1u32 << l.bit_depth) - 1;
            let dst = plane.data_origin_mut();
            for r in 0..rows {
                let s = &src[r * stride..r * stride + row_bytes];
                let d = &mut dst[r * dst_stride..r * dst_stride + cols];
                if l.bytes_per_sample == 1 {
                    for (d, s) in d.iter_mut().zip(s) {
                        *d = T::cast_from(*s);
                    }
                } else {
                    // Out-of-range samples are clamped: rav1e's SIMD
                    // kernels assume the declared bit depth.
                    for (d, s) in d.iter_mut().zip(s.chunks_exact(2)) {
                        let x = u16::from_le_bytes([s[0], s[1]]).min(max as u16);
                        *d = T::cast_from(x);
                    }
                }
            }
        }
        let params = FrameParameters {
            frame_type_override: if v.key {
                FrameTypeOverride::Key
            } else {
                FrameTypeOverride::No
            },
            opaque: Some(Opaque::new(v.pts)),
            ..FrameParameters::default()
        };
        ctx.send_frame((frame, params))
            .map_err(|e| format!("{what}: {}", status_text(e)))
    }
}

impl plugin::Encoder for Encoder {
    fn open(cfg: &EncoderSettings) -> PResult<(Self, StreamInfo)> {
        if cfg.media != media::VIDEO {
            return Err(format!(
                "rav1e encodes video (media {}), not media {}",
                media::VIDEO,
                cfg.media
            ));
        }
        if cfg.codec != "av1" {
            return Err(format!(
                "rav1e encodes `av1`, not `{}`; it offers: av1 (rav1e)",
                cfg.codec
            ));
        }
        if !cfg.implementation.is_empty() && cfg.implementation != "rav1e" {
            return Err(format!(
                "this plugin has no `{}` encoder; it offers: av1 (rav1e)",
                cfg.implementation
            ));
        }
        let Some(&(pix_fmt, depth, cs)) = PIX_FMTS.iter().find(|(f, _, _)| *f == cfg.pix_fmt)
        else {
            return Err(format!(
                "rav1e cannot take {} frames; accepted: {}",
                pix::name(cfg.pix_fmt)
                    .map_or_else(|| format!("pixel format {}", cfg.pix_fmt), |n| n.to_owned()),
                pix_fmt_names().join(", ")
            ));
        };
        let layout = pix::layout(pix_fmt).expect("every format of PIX_FMTS has a layout");
        if !positive(cfg.frame_rate) {
            return Err(format!(
                "rav1e needs a frame rate (for rate control and packet durations), got {}/{}",
                cfg.frame_rate.num, cfg.frame_rate.den
            ));
        }
        if !positive(cfg.time_base) {
            return Err(format!(
                "rav1e needs a time base with a positive numerator and denominator, got {}/{}",
                cfg.time_base.num, cfg.time_base.den
            ));
        }
        let name = pix::name(pix_fmt).unwrap_or("?");
        let o = options::parse(&cfg.options, name, cfg.bit_rate).map_err(|e| e.to_string())?;
        let colour = sequence_colour(cfg.color)?;
        let c = config(cfg, &o, depth, cs, &colour)?;
        let refused = |e| format!("rav1e refused the settings ({o}): {e}");
        let (ctx, extradata) = if depth == 8 {
            let ctx = c.new_context::<u8>().map_err(refused)?;
            let h = ctx.container_sequence_header();
            (Ctx::Eight(ctx), h)
        } else {
            let ctx = c.new_context::<u16>().map_err(refused)?;
            let h = ctx.container_sequence_header();
            (Ctx::High(ctx), h)
        };
        let info = StreamInfo {
            media: media::VIDEO,
            codec: "av1".into(),
            // As FFmpeg names AV1's seq_profile 0 and 1.
            profile: if o.profile == "high" { "High" } else { "Main" }.into(),
            width: cfg.width,
            height: cfg.height,
            pix_fmt,
            color: colour.written,
            frame_rate: cfg.frame_rate,
            bit_rate: match o.rate {
                RateControl::Bitrate { bits_per_s, .. } => i64::from(bits_per_s),
                RateControl::Quantizer(_) => 0,
            },
            time_base: cfg.time_base,
            extradata,
            ..StreamInfo::default()
        };
        plugin::log(
            plugin::level::DEBUG,
            "rav1e",
            &format!(
                "opened {}x{} {name} AV1 ({o}, profile {})",
                cfg.width, cfg.height, o.profile
            ),
        );
        Ok((
            Encoder {
                ctx,
                what: "av1 encoder (rav1e)".into(),
                width: cfg.width,
                height: cfg.height,
                pix_fmt,
                layout,
                time_base: cfg.time_base,
                frame_duration: frame_duration(cfg.frame_rate, cfg.time_base),
                last_pts: None,
                draining: false,
                finished: false,
            },
            info,
        ))
    }

    fn send_video(&mut self, frame: Option<&VideoView<'_>>) -> PResult<()> {
        let Some(v) = frame else {
            // Draining twice is the same as once.
            if !self.draining {
                self.draining = true;
                let r = match &mut self.ctx {
                    Ctx::Eight(c) => c.send_frame(None),
                    Ctx::High(c) => c.send_frame(None),
                };
                r.map_err(|e| format!("{}: {}", self.what, status_text(e)))?;
            }
            return Ok(());
        };
        if self.draining {
            return Err(format!(
                "{}: a frame was sent after the drain request",
                self.what
            ));
        }
        self.check(v)?;
        let (l, what) = (self.layout, self.what.as_str());
        match &mut self.ctx {
            Ctx::Eight(c) => Self::send_frame(c, v, l, what)?,
            Ctx::High(c) => Self::send_frame(c, v, l, what)?,
        }
        self.last_pts = Some(v.pts);
        Ok(())
    }

    fn send_audio(&mut self, _: Option<&AudioView<'_>>) -> PResult<()> {
        Err(format!("{} encodes video only", self.what))
    }

    fn receive(&mut self) -> PResult<Result<OwnedPacket, i32>> {
        if self.finished {
            return Ok(Err(status::EOF));
        }
        let got = match &mut self.ctx {
            Ctx::Eight(c) => Self::receive_one(c).map(|p| p.map(|p| self.packet(p))),
            Ctx::High(c) => Self::receive_one(c).map(|p| p.map(|p| self.packet(p))),
        };
        match got {
            Ok(Some(p)) => Ok(Ok(p?)),
            // rav1e wants more frames; after the drain it never does.
            Ok(None) if !self.draining => Ok(Err(status::NEED_MORE)),
            Ok(None) => Err(format!(
                "{}: rav1e asked for more frames after the drain",
                self.what
            )),
            Err(EncoderStatus::LimitReached) => {
                self.finished = true;
                Ok(Err(status::EOF))
            }
            Err(e) => Err(format!("{}: {}", self.what, status_text(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_durations_in_the_time_base() {
        let r = abi::Rational::new;
        assert_eq!(frame_duration(r(25, 1), r(1, 25)), 1);
        assert_eq!(frame_duration(r(25, 1), r(1, 1000)), 40);
        assert_eq!(frame_duration(r(30000, 1001), r(1, 90000)), 3003);
        assert_eq!(frame_duration(r(30000, 1001), r(1001, 30000)), 1);
    }
}
